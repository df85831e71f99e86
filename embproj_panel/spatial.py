"""Hit testing on the server: which projected points are near a position, in a box or a lasso.

The scatter's hover, tap, box and lasso selections on a Datashader raster (where the browser
has no points to test) are answered here, in data coordinates; the same index will serve
search and neighbour views. No plotting and no Panel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["PointIndex"]


class PointIndex:
    """Hit testing on the server: which points are near a position, in a box or a lasso.

    Points are sorted by x once, so a query only looks at the slab of points whose x falls in
    range: a hover over a million points touches thousands, not a million.

    Parameters
    ----------
    x, y
        Coordinates; positions returned by the queries index these arrays.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"x and y must be 1-D of equal length; got {x.shape} and {y.shape}")
        # float32 coordinates stay float32 (a million rows: 8 MB less per axis; hit testing
        # needs no more precision than the projection has).
        dtype = np.result_type(x.dtype, y.dtype, np.float32)
        self._order = np.argsort(x, kind="stable")
        self._x = x[self._order].astype(dtype, copy=False)
        self._y = y[self._order].astype(dtype, copy=False)

    def __len__(self) -> int:
        return len(self._x)

    def _slab(self, x0: float, x1: float) -> slice:
        lo = int(np.searchsorted(self._x, x0, side="left"))
        hi = int(np.searchsorted(self._x, x1, side="right"))
        return slice(lo, hi)

    def nearest(self, px: float, py: float, rx: float, ry: float) -> int | None:
        """The point closest to ``(px, py)`` inside the ellipse of radii ``(rx, ry)``.

        Radii are per axis because the axes of a zoomed plot have different scales; pass the
        data distance of a few screen pixels in each direction.

        Returns
        -------
        int or None
            Position of the point, or None if no point is that close.
        """
        if not len(self) or not (rx > 0 and ry > 0) or not np.isfinite([px, py]).all():
            return None
        window = self._slab(px - rx, px + rx)
        dx = (self._x[window] - px) / rx
        dy = (self._y[window] - py) / ry
        dist = dx * dx + dy * dy
        if not dist.size:
            return None
        best = int(np.argmin(dist))
        if dist[best] > 1.0:
            return None
        return int(self._order[window][best])

    def in_box(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Sorted positions of the points inside the box (edges included)."""
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        window = self._slab(x0, x1)
        ys = self._y[window]
        hits = self._order[window][(ys >= y0) & (ys <= y1)]
        return np.sort(hits)

    def in_polygon(self, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
        """Sorted positions of the points inside the polygon (even-odd rule), as a lasso."""
        px = np.asarray(xs, dtype=np.float64)
        py = np.asarray(ys, dtype=np.float64)
        if px.shape != py.shape or px.ndim != 1:
            raise ValueError("polygon xs and ys must be 1-D of equal length")
        if len(px) < 3:
            return np.zeros(0, dtype=np.int64)
        window = self._slab(px.min(), px.max())
        cx, cy = self._x[window], self._y[window]
        keep = (cy >= py.min()) & (cy <= py.max())
        cx, cy = cx[keep], cy[keep]
        candidates = self._order[window][keep]
        inside = np.zeros(len(cx), dtype=bool)
        # Ray casting, one polygon edge at a time: O(edges x candidates) without a Python
        # loop over points.
        x_prev, y_prev = px[-1], py[-1]
        for x_cur, y_cur in zip(px, py):
            crosses = (y_cur > cy) != (y_prev > cy)
            if crosses.any():
                with np.errstate(divide="ignore", invalid="ignore"):
                    x_at = (x_prev - x_cur) * (cy - y_cur) / (y_prev - y_cur) + x_cur
                inside ^= crosses & (cx < x_at)
            x_prev, y_prev = x_cur, y_cur
        return np.sort(candidates[inside])

