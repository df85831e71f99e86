"""Which cluster labels fit on screen: a pure layout, no Panel, no plotting.

:func:`layout_labels` takes every label's anchor (data coordinates), its priority (cluster
size) and its box in screen pixels, and the current view (data ranges and plot size in
pixels). It walks the labels from the highest priority down and keeps each one whose box
overlaps no box kept before, until ``max_labels`` are kept. So labels never overlap, the
largest clusters are named first, and zooming in (which spreads the anchors apart on screen
while the boxes keep their pixel size) makes room for more. A label whose anchor is in view
but whose box would cross the plot's edge is nudged inside (so a cluster at the edge keeps
its name). The result depends only on its arguments: the same view always shows the same
labels.

:func:`text_box` estimates a label's box from its text without a browser: wide (East Asian
full-width) characters count double, and the estimate is generous (0.62 em per character) so
the real text, drawn by the browser, stays inside its box. :func:`fit_text` cuts a text (with
an ellipsis, keeping a trailing share such as "(92%)") until that box fits a width: a label
wider than the plot would otherwise never be drawn at all.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["MAX_LABELS", "LabelLayout", "fit_text", "layout_labels", "text_box"]

MAX_LABELS = 30
_EM_PER_CHAR = 0.62
_LINE_HEIGHT = 1.3


def text_box(text: str, font_px: float = 13.0, padding_px: float = 4.0) -> tuple[float, float]:
    """The (width, height) in screen pixels of one line of ``text`` at ``font_px``."""
    units = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    width = max(1, units) * _EM_PER_CHAR * font_px + 2 * padding_px
    height = _LINE_HEIGHT * font_px + 2 * padding_px
    return width, height


_SHARE = re.compile(r" \(\d+%\)$")


def fit_text(text: str, max_width_px: float, font_px: float = 13.0,
             padding_px: float = 4.0) -> str:
    """``text``, cut with an ellipsis until its :func:`text_box` is at most ``max_width_px``.

    A trailing share (" (92%)") is kept and the value before it cut; if not even the ellipsis
    and the share fit, the result is the shortest such text (the layout then leaves it out).
    """
    if text_box(text, font_px, padding_px)[0] <= max_width_px:
        return text
    match = _SHARE.search(text)
    head, tail = (text[: match.start()], match.group()) if match else (text, "")
    low, high = 0, len(head)  # the longest prefix whose cut text fits
    while low < high:
        mid = (low + high + 1) // 2
        if text_box(head[:mid] + "\u2026" + tail, font_px, padding_px)[0] <= max_width_px:
            low = mid
        else:
            high = mid - 1
    return head[:low].rstrip() + "\u2026" + tail


class LabelLayout(NamedTuple):
    """The labels to draw: their indices and where their boxes' centres go (data units)."""

    index: np.ndarray
    x: np.ndarray
    y: np.ndarray


def layout_labels(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    widths: Sequence[float] | np.ndarray,
    heights: Sequence[float] | np.ndarray,
    priority: Sequence[float] | np.ndarray,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    size_px: tuple[int, int],
    max_labels: int = MAX_LABELS,
) -> LabelLayout:
    """The labels to draw in this view, highest priority first.

    Parameters
    ----------
    x, y
        Each label's anchor in data coordinates; its box is centred there. NaN anchors are
        never shown.
    widths, heights
        Each label's box in screen pixels (see :func:`text_box`).
    priority
        Larger first (cluster sizes); ties go to the lower index.
    x_range, y_range
        The visible data ranges ``(low, high)``.
    size_px
        The plot area's ``(width, height)`` in pixels.
    max_labels
        At most this many labels.

    Returns
    -------
    LabelLayout
        ``index``: int64 indices into the inputs of the labels to draw; ``x``, ``y``: the
        centres of their boxes in data units (the anchor, or nudged so that the box lies
        inside the plot area). A label is drawn when its anchor is in view, its box fits the
        plot and it overlaps no higher-priority label drawn.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(widths, dtype=np.float64)
    h = np.asarray(heights, dtype=np.float64)
    p = np.asarray(priority, dtype=np.float64)
    n = len(x)
    if not all(len(a) == n for a in (y, w, h, p)):
        raise ValueError("x, y, widths, heights and priority must have the same length")
    width_px, height_px = (float(v) for v in size_px)
    (x0, x1), (y0, y1) = (float(v) for v in x_range), (float(v) for v in y_range)
    empty = LabelLayout(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
    if n == 0 or max_labels <= 0 or width_px <= 0 or height_px <= 0 or x1 <= x0 or y1 <= y0:
        return empty
    # Screen pixels, y down like the browser's (only overlaps matter, not the direction).
    sx = (x - x0) / (x1 - x0) * width_px
    sy = (y1 - y) / (y1 - y0) * height_px
    inside = (
        np.isfinite(sx) & np.isfinite(sy) & (sx >= 0) & (sx <= width_px) & (sy >= 0)
        & (sy <= height_px) & (w <= width_px) & (h <= height_px)
    )
    # Nudge boxes that cross an edge back inside the plot.
    with np.errstate(invalid="ignore"):
        cx = np.clip(sx, w / 2, width_px - w / 2)
        cy = np.clip(sy, h / 2, height_px - h / 2)
    left, right = cx - w / 2, cx + w / 2
    top, bottom = cy - h / 2, cy + h / 2
    candidates = np.flatnonzero(inside)
    order = candidates[np.lexsort((candidates, -p[candidates]))]
    kept: list[int] = []
    for i in order:
        if kept:
            k = np.asarray(kept)
            # Boxes that merely touch (share an edge) do not overlap.
            overlap = (
                (left[i] < right[k]) & (left[k] < right[i])
                & (top[i] < bottom[k]) & (top[k] < bottom[i])
            )
            if overlap.any():
                continue
        kept.append(int(i))
        if len(kept) >= max_labels:
            break
    if not kept:
        return empty
    index = np.asarray(kept, dtype=np.int64)
    return LabelLayout(index, x0 + cx[index] / width_px * (x1 - x0),
                       y1 - cy[index] / height_px * (y1 - y0))
