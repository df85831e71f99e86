"""Which points show their image on the map: at most one per screen cell; no Panel.

"Images on the map" draws up to ``MAX_IMAGES`` thumbnails at their points in the current
view. Which ones is decided here, by a pure rule:

* The view is cut into square-ish *cells* of at least ``CELL_PX`` screen pixels. A cell's
  size in data units is rounded up to a power of two and the grid is anchored at the data
  origin, so panning moves the grid with the points (the same point keeps its image) and a
  small zoom keeps the same cells; only a zoom past a factor of two regrids.
* Every point has a fixed, seeded *priority* (a random permutation of the rows). In each
  cell the point of highest priority shows its image, and when there are more cells than
  ``MAX_IMAGES`` the cells whose best point ranks highest win. Because a point that wins a
  cell also wins every smaller cell it lies in, zooming in keeps the images already shown
  (while the cap is not reached) and adds more.
* A lazy table reads its cells a block (a Parquet row group) at a time, so a pick whose 200
  rows lie in 16 blocks reads 16 blocks' images. With ``blocks`` (each point's block) the
  priority is block-major: every point of the first block ranks above every point of the
  second, and so on, each block in its own seeded order. A cell then shows a point of the
  first block that has one there, so a view mostly reads one block; deeper zooms, where a cell
  holds only a few points, add the next blocks. The rule stays a fixed priority, so
  everything above still holds.
* Two points in neighbouring cells can still lie a pixel apart; with ``gap_px`` (the
  thumbnail's size) a cell's best point is skipped when its thumbnail would overlap one
  already chosen, so thumbnails never cover one another.

:class:`ImageCells` sorts the points by priority once per layout; a view change then scans the
points in priority order and stops as soon as ``MAX_IMAGES`` cells are filled, so at a
million rows a pick costs milliseconds, not a sort.

What a view change sends is bounded: at most ``max_images`` thumbnails, each a PNG of at most
``THUMBNAIL_PX`` x ``THUMBNAIL_PX`` pixels with at most 4 channels, as a base64 data URI;
:func:`payload_bound` is that bound in bytes (about 2.6 MB for 200 thumbnails of 48 px,
worst case: incompressible noise; real thumbnails are a few hundred bytes to a few KB each).
:class:`ThumbnailCache` keeps encoded thumbnails per row so a pan re-encodes nothing.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "CELL_PX",
    "MAX_IMAGES",
    "THUMBNAIL_PX",
    "ImageCells",
    "ThumbnailCache",
    "cell_size",
    "payload_bound",
    "pick_image_rows",
]

MAX_IMAGES = 200
CELL_PX = 64
THUMBNAIL_PX = 48
_SCAN_CHUNK = 65_536
_DATA_URI_PREFIX = len("data:image/png;base64,")


def cell_size(x_range: tuple[float, float], y_range: tuple[float, float],
              size_px: tuple[int, int], cell_px: float = CELL_PX) -> tuple[float, float]:
    """A cell's (width, height) in data units: at least ``cell_px`` pixels, a power of two."""
    (x0, x1), (y0, y1) = x_range, y_range
    width_px, height_px = size_px
    if not (x1 > x0 and y1 > y0 and width_px > 0 and height_px > 0 and cell_px > 0):
        raise ValueError(
            f"need a non-empty view and plot size; got x_range={x_range}, y_range={y_range}, "
            f"size_px={size_px}, cell_px={cell_px}"
        )
    raw_x = (x1 - x0) / width_px * cell_px
    raw_y = (y1 - y0) / height_px * cell_px
    return 2.0 ** math.ceil(math.log2(raw_x)), 2.0 ** math.ceil(math.log2(raw_y))


class ImageCells:
    """The points of one layout, sorted once by their fixed priority, ready to pick from.

    Parameters
    ----------
    coords
        ``(n, 2)`` point positions (NaN: never picked).
    eligible
        Optional boolean mask: only these points can show an image (rows with an image).
    seed
        Seed of the priority permutation.
    blocks
        Optional integer block of each point (the unit a lazy table reads cells in, see
        :meth:`~embproj_panel.table.Table.read_blocks`): points of lower blocks rank first.
    """

    def __init__(self, coords: Any, eligible: Any = None, seed: int = 0,
                 blocks: Any = None) -> None:
        points = np.asarray(coords, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"coords must have shape (n, 2); got {points.shape}")
        n = len(points)
        order = np.random.default_rng(seed).permutation(n)
        usable = np.isfinite(points).all(axis=1)
        if eligible is not None:
            eligible = np.asarray(eligible, dtype=bool)
            if eligible.shape != (n,):
                raise ValueError(f"eligible must have shape ({n},); got {eligible.shape}")
            usable &= eligible
        order = order[usable[order]]
        if blocks is not None:
            blocks = np.asarray(blocks)
            if blocks.shape != (n,):
                raise ValueError(f"blocks must have shape ({n},); got {blocks.shape}")
            ranks = blocks[order]
            if len(ranks) and ranks.min() >= 0 and ranks.max() < 2**15:
                ranks = ranks.astype(np.int16)  # numpy's stable sort of int16 is a radix sort
            # Stable: within a block the seeded order stays.
            order = order[np.argsort(ranks, kind="stable")]
        self.n = n
        self._order = order
        self._xy = np.ascontiguousarray(points[order])

    def pick(self, x_range: tuple[float, float], y_range: tuple[float, float],
             size_px: tuple[int, int], cell_px: float = CELL_PX,
             max_images: int = MAX_IMAGES, gap_px: float | None = None) -> np.ndarray:
        """Positions (indices into ``coords``) of the points that show an image in this view.

        At most one per cell, at most ``max_images``, highest priority first. With
        ``gap_px`` (at most ``cell_px``: the drawn thumbnail's size), a cell's best point is
        also skipped when its ``gap_px`` square would overlap one already chosen, so the
        thumbnails never cover one another.
        """
        if max_images <= 0:
            return np.zeros(0, dtype=np.int64)
        if gap_px is not None and not 0 < gap_px <= cell_px:
            raise ValueError(f"gap_px must be in (0, cell_px={cell_px}]; got {gap_px}")
        cw, ch = cell_size(x_range, y_range, size_px, cell_px)
        (x0, x1), (y0, y1) = x_range, y_range
        # Cell indices relative to the view's first cell keep the combined key small.
        ix0, iy0 = math.floor(x0 / cw), math.floor(y0 / ch)
        ny = math.floor(y1 / ch) - iy0 + 1
        gap = None
        if gap_px is not None:  # the gap in data units along each axis
            gap = (gap_px * (x1 - x0) / size_px[0], gap_px * (y1 - y0) / size_px[1])
        seen: set[int] = set()
        chosen_at: dict[tuple[int, int], tuple[float, float]] = {}
        picked: list[int] = []
        for low in range(0, len(self._xy), _SCAN_CHUNK):
            xy = self._xy[low:low + _SCAN_CHUNK]
            inside = np.flatnonzero(
                (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
            )
            if not len(inside):
                continue
            cx = np.floor(xy[inside, 0] / cw).astype(np.int64) - ix0
            cy = np.floor(xy[inside, 1] / ch).astype(np.int64) - iy0
            keys = cx * ny + cy
            # First occurrence of each cell in this chunk = its best point (priority order).
            _, first = np.unique(keys, return_index=True)
            for i in np.sort(first):
                key = int(keys[i])
                if key in seen:
                    continue
                seen.add(key)
                if gap is not None:
                    px, py = xy[inside[i]]
                    cell = (int(cx[i]), int(cy[i]))
                    # A thumbnail no larger than a cell can only meet one in the 3 x 3 cells
                    # around its own.
                    if any(abs(px - qx) < gap[0] and abs(py - qy) < gap[1]
                           for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                           if (q := chosen_at.get((cell[0] + dx, cell[1] + dy))) is not None
                           for qx, qy in (q,)):
                        continue
                    chosen_at[cell] = (px, py)
                picked.append(int(self._order[low + inside[i]]))
                if len(picked) >= max_images:
                    return np.asarray(picked, dtype=np.int64)
        return np.asarray(picked, dtype=np.int64)


def pick_image_rows(coords: Any, x_range: tuple[float, float], y_range: tuple[float, float],
                    size_px: tuple[int, int], *, cell_px: float = CELL_PX,
                    max_images: int = MAX_IMAGES, gap_px: float | None = None,
                    eligible: Any = None, seed: int = 0, blocks: Any = None) -> np.ndarray:
    """The points that show their image in this view (see :class:`ImageCells`).

    A pure function of its arguments: the same layout and view give the same points.
    """
    return ImageCells(coords, eligible=eligible, seed=seed, blocks=blocks).pick(
        x_range, y_range, size_px, cell_px=cell_px, max_images=max_images, gap_px=gap_px
    )


def png_bound(thumbnail_px: int = THUMBNAIL_PX, channels: int = 4) -> int:
    """The largest PNG an 8-bit ``thumbnail_px`` square image with ``channels`` can be.

    Raw scanlines (one filter byte each) plus zlib's worst case for incompressible data
    (5 bytes per 16 KB stored block, 6 bytes of header and checksum) plus PNG's signature,
    IHDR, IDAT and IEND chunks (and one IDAT chunk header per 64 KB Pillow writes).
    """
    raw = thumbnail_px * (thumbnail_px * channels + 1)
    zlib = raw + 5 * (raw // 16_383 + 1) + 6
    return 8 + 25 + 12 * (zlib // 65_536 + 1) + zlib + 12


def payload_bound(max_images: int = MAX_IMAGES, thumbnail_px: int = THUMBNAIL_PX) -> int:
    """Bytes of thumbnails one view change can send: ``max_images`` base64 PNG data URIs."""
    png = png_bound(thumbnail_px)
    return max_images * (_DATA_URI_PREFIX + 4 * math.ceil(png / 3))


class ThumbnailCache:
    """Encoded thumbnails by row, least recently used out first, bounded in bytes.

    ``encode(row)`` returns the data URI of a row's thumbnail (or None: no image);
    ``encode_many(rows)``, if given, those of several rows at once (a lazy dataset reads them
    in one pass over their row groups instead of one pass per row). The cache belongs to one
    session's state: never share it at module level.
    """

    def __init__(self, encode: Callable[[int], str | None], max_bytes: int = 32 * 2**20,
                 encode_many: Callable[[list[int]], list[str | None]] | None = None) -> None:
        self._encode = encode
        self._encode_many = encode_many
        self._max_bytes = max_bytes
        self._items: OrderedDict[int, str | None] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, row: int) -> str | None:
        row = int(row)
        if row in self._items:
            self._items.move_to_end(row)
            return self._items[row]
        return self._put(row, self._encode(row))

    def _put(self, row: int, uri: str | None) -> str | None:
        self._items[row] = uri
        self._bytes += len(uri or "")
        while self._bytes > self._max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old or "")
        return uri

    def many(self, rows: Any) -> list[str | None]:
        rows = [int(row) for row in rows]
        if self._encode_many is not None:
            missing = list(dict.fromkeys(row for row in rows if row not in self._items))
            if missing:
                found = dict(zip(missing, self._encode_many(missing)))
                # Straight into the result too: a batch larger than the budget may evict
                # some of its own rows before they are returned.
                for row in missing:
                    self._put(row, found[row])
                return [found[row] if row in found else self.get(row) for row in rows]
        return [self.get(row) for row in rows]
