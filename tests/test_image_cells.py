"""Images on the map: at most one per screen cell, in view, capped, deterministic, stable under
pan and zoom-in; the payload bound holds for the worst thumbnails; the thumbnail cache."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embproj_panel import Image
from embproj_panel.image_cells import (
    MAX_IMAGES,
    THUMBNAIL_PX,
    ImageCells,
    ThumbnailCache,
    cell_size,
    payload_bound,
    pick_image_rows,
    png_bound,
)


def cells_of(coords, rows, x_range, y_range, size, cell_px=64):
    cw, ch = cell_size(x_range, y_range, size, cell_px)
    return list(zip(np.floor(coords[rows, 0] / cw), np.floor(coords[rows, 1] / ch)))


def cloud(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) * [10, 5]


@settings(max_examples=120, deadline=None)
@given(st.floats(-30, 20), st.floats(0.01, 60), st.floats(-15, 10), st.floats(0.01, 30),
       st.integers(64, 2000), st.integers(64, 1200), st.integers(0, 400),
       st.integers(16, 128), st.floats(0.2, 1.0) | st.none())
def test_one_per_cell_in_view_capped(x0, dx, y0, dy, width, height, cap, cell_px, gap):
    coords = cloud(3_000)
    x_range, y_range, size = (x0, x0 + dx), (y0, y0 + dy), (width, height)
    gap_px = None if gap is None else gap * cell_px
    rows = pick_image_rows(coords, x_range, y_range, size, cell_px=cell_px, max_images=cap,
                           gap_px=gap_px)
    assert len(rows) <= cap and len(set(rows.tolist())) == len(rows)
    cells = cells_of(coords, rows, x_range, y_range, size, cell_px)
    assert len(set(cells)) == len(cells)  # at most one image per screen cell
    inside = ((coords[rows, 0] >= x0) & (coords[rows, 0] <= x0 + dx)
              & (coords[rows, 1] >= y0) & (coords[rows, 1] <= y0 + dy))
    assert inside.all()
    cw, ch = cell_size(x_range, y_range, size, cell_px)
    # cells of at least cell_px screen pixels
    assert cw / (dx / width) >= cell_px * (1 - 1e-9) and ch / (dy / height) >= cell_px * (1 - 1e-9)
    if gap_px is not None:  # thumbnails of gap_px never overlap
        sx = coords[rows, 0] / dx * width
        sy = coords[rows, 1] / dy * height
        close = ((np.abs(sx[:, None] - sx[None]) < gap_px * (1 - 1e-9))
                 & (np.abs(sy[:, None] - sy[None]) < gap_px * (1 - 1e-9)))
        assert close.sum() == len(rows)  # only each one with itself
    # every occupied cell is filled unless the cap was reached (or a thumbnail was in the way)
    elif len(rows) < cap:
        view = np.flatnonzero((coords[:, 0] >= x0) & (coords[:, 0] <= x0 + dx)
                              & (coords[:, 1] >= y0) & (coords[:, 1] <= y0 + dy))
        occupied = set(cells_of(coords, view, x_range, y_range, size, cell_px))
        assert set(cells) == occupied


def test_deterministic_and_the_default_cap():
    coords = cloud()
    view = ((-30, 30), (-15, 15), (1900, 1000))
    first = pick_image_rows(coords, *view)
    assert len(first) == MAX_IMAGES
    np.testing.assert_array_equal(first, pick_image_rows(coords, *view))
    np.testing.assert_array_equal(first, ImageCells(coords).pick(*view))
    assert not np.array_equal(first, pick_image_rows(coords, *view, seed=1))


def test_pan_keeps_the_images_of_points_still_in_view():
    coords = cloud()
    cells = ImageCells(coords)
    size = (800, 600)
    before = cells.pick((-8, 8), (-6, 6), size, max_images=10_000)
    after = cells.pick((-6, 10), (-5, 7), size, max_images=10_000)  # same zoom, panned
    common = [row for row in before
              if -6 <= coords[row, 0] <= 8 and -5 <= coords[row, 1] <= 6]
    assert common and set(common) <= set(after.tolist())


def test_zoom_in_keeps_images_and_adds_more():
    coords = cloud()
    cells = ImageCells(coords)
    size = (800, 600)
    wide = cells.pick((-16, 16), (-12, 12), size, max_images=10_000)
    close = cells.pick((-4, 4), (-3, 3), size, max_images=10_000)
    still = [row for row in wide if -4 <= coords[row, 0] <= 4 and -3 <= coords[row, 1] <= 3]
    assert set(still) <= set(close.tolist()) and len(close) > len(still)
    # a zoom by less than a factor of two keeps the same grid, hence the same images
    assert set(cells.pick((-15, 15), (-11, 11), size, max_images=10_000).tolist()) >= {
        row for row in wide if -15 <= coords[row, 0] <= 15 and -11 <= coords[row, 1] <= 11}


def test_rows_without_image_or_position_are_never_picked():
    coords = cloud(2_000)
    coords[::3] = np.nan
    eligible = np.arange(2_000) % 2 == 0
    rows = pick_image_rows(coords, (-50, 50), (-50, 50), (3000, 3000), eligible=eligible,
                           max_images=5_000)
    assert len(rows) and (rows % 2 == 0).all() and (rows % 3 != 0).all()
    with pytest.raises(ValueError, match="eligible must have shape"):
        ImageCells(coords, eligible=[True])
    with pytest.raises(ValueError, match="non-empty view"):
        pick_image_rows(coords, (1, 1), (0, 1), (100, 100))
    assert pick_image_rows(coords, (0, 1), (0, 1), (100, 100), max_images=0).size == 0
    assert ImageCells(np.zeros((0, 2))).pick((0, 1), (0, 1), (100, 100)).size == 0


def test_blocks_make_a_view_read_few_blocks_and_keep_one_image_per_cell():
    # 20,000 points in 20 blocks of 1,000 rows (a lazy table's row groups), shuffled in space.
    coords = cloud()
    blocks = np.arange(len(coords)) // 1_000
    view = ((-30, 30), (-15, 15)), (900, 700)
    plain = ImageCells(coords).pick(*view[0], view[1], gap_px=54)
    rows = ImageCells(coords, blocks=blocks).pick(*view[0], view[1], gap_px=54)
    assert len(np.unique(blocks[plain])) >= 10  # a plain priority: rows of most blocks
    # Block-major: the first block's points win most cells (the sparse edge cells need later
    # blocks), and the rule is unchanged: one per cell, capped, deterministic.
    assert len(np.unique(blocks[rows])) <= len(np.unique(blocks[plain])) // 2
    assert np.mean(blocks[rows] == 0) > 0.6
    assert abs(len(rows) - len(plain)) <= 0.2 * len(plain)
    cells = cells_of(coords, rows, *view[0], view[1])
    assert len(set(cells)) == len(cells)
    assert np.array_equal(rows, ImageCells(coords, blocks=blocks).pick(*view[0], view[1],
                                                                       gap_px=54))
    # Zooming in keeps the images still in view (a fixed priority, block-major or not).
    zoomed = ImageCells(coords, blocks=blocks).pick((-8, 8), (-4, 4), (900, 700),
                                                    max_images=10_000)
    inside = [r for r in rows if -8 <= coords[r, 0] <= 8 and -4 <= coords[r, 1] <= 4]
    assert set(inside) <= set(zoomed.tolist())
    with pytest.raises(ValueError, match="blocks must have shape"):
        ImageCells(coords, blocks=[0])


def test_payload_bound_holds_for_incompressible_thumbnails():
    rng = np.random.default_rng(0)
    worst = 0
    for shape in [(THUMBNAIL_PX, THUMBNAIL_PX, 4), (300, 200, 4), (THUMBNAIL_PX, 40, 3), (8, 8)]:
        image = Image(rng.integers(0, 256, size=shape, dtype=np.uint8))
        uri = image.thumbnail_uri(THUMBNAIL_PX)
        png = base64.b64decode(uri.split(",", 1)[1])
        assert len(png) <= png_bound(THUMBNAIL_PX)
        worst = max(worst, len(uri))
    assert MAX_IMAGES * worst <= payload_bound(MAX_IMAGES, THUMBNAIL_PX)
    assert payload_bound() == MAX_IMAGES * (22 + 4 * math.ceil(png_bound() / 3))
    assert payload_bound() < 2.7e6  # the stated bound: about 2.6 MB per view change


def test_thumbnail_cache_encodes_once_and_stays_bounded():
    calls = []

    def encode(row):
        calls.append(row)
        return None if row == 3 else "x" * 100

    cache = ThumbnailCache(encode, max_bytes=450)
    assert cache.many([1, 2, 1, 3]) == ["x" * 100, "x" * 100, "x" * 100, None]
    assert calls == [1, 2, 3]
    cache.many([4, 5, 6])  # 600 bytes asked: the least recently used go
    assert cache.nbytes <= 450 and 2 not in cache._items and 6 in cache._items
