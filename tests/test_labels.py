"""The label layout: never overlapping, at most max_labels, largest first, more on zoom-in."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from embproj_panel.labels import MAX_LABELS, layout_labels, text_box


def screen_boxes(x, y, w, h, x_range, y_range, size):
    sx = (np.asarray(x) - x_range[0]) / (x_range[1] - x_range[0]) * size[0]
    sy = (y_range[1] - np.asarray(y)) / (y_range[1] - y_range[0]) * size[1]
    w, h = np.asarray(w), np.asarray(h)
    return sx - w / 2, sx + w / 2, sy - h / 2, sy + h / 2


def overlaps(boxes, i, j) -> bool:
    left, right, top, bottom = boxes
    return bool(left[i] < right[j] and left[j] < right[i] and top[i] < bottom[j]
                and top[j] < bottom[i])


labels_strategy = st.integers(0, 80).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-10, 10), min_size=n, max_size=n),
    st.lists(st.floats(-10, 10), min_size=n, max_size=n),
    st.lists(st.floats(5, 300), min_size=n, max_size=n),
    st.lists(st.floats(5, 60), min_size=n, max_size=n),
    st.lists(st.integers(1, 5), min_size=n, max_size=n),  # few values: ties happen
))
view_strategy = st.tuples(
    st.floats(-12, 0), st.floats(0.5, 24),  # x low, width
    st.floats(-12, 0), st.floats(0.5, 24),  # y low, height
    st.integers(50, 2000), st.integers(50, 1200),  # plot pixels
    st.integers(0, 40),
)


@settings(max_examples=300, deadline=None)
@given(labels_strategy, view_strategy)
def test_layout_never_overlaps_and_is_greedy_by_priority(labels, view):
    x, y, w, h, p = labels
    x0, dx, y0, dy, width, height, cap = view
    x_range, y_range, size = (x0, x0 + dx), (y0, y0 + dy), (width, height)
    layout = layout_labels(x, y, w, h, p, x_range, y_range, size, max_labels=cap)
    shown = layout.index
    assert len(shown) <= cap and len(set(shown.tolist())) == len(shown)
    # the boxes as drawn (centred where the layout put them)
    bx, by = np.array(x, dtype=float), np.array(y, dtype=float)
    bx[shown], by[shown] = layout.x, layout.y
    boxes = screen_boxes(bx, by, w, h, x_range, y_range, size)
    left, right, top, bottom = boxes
    eps = 1e-6 * max(width, height)
    for a, i in enumerate(shown):
        tx, ty = 1e-9 * (x_range[1] - x_range[0]), 1e-9 * (y_range[1] - y_range[0])
        assert x_range[0] - tx <= x[i] <= x_range[1] + tx
        assert y_range[0] - ty <= y[i] <= y_range[1] + ty
        assert left[i] >= -eps and right[i] <= width + eps
        assert top[i] >= -eps and bottom[i] <= height + eps
        for j in shown[a + 1:]:
            assert not overlaps(boxes, i, j)
    # highest priority first, ties by index
    keys = [(-p[i], i) for i in shown]
    assert keys == sorted(keys)
    # greedy: every label left out whose anchor is in view (and whose box fits the plot) was
    # blocked by a kept label of at least its priority, or the cap was reached
    if len(shown) < cap:
        kept = set(shown.tolist())
        sx = (np.asarray(x) - x_range[0]) / (x_range[1] - x_range[0]) * width
        sy = (y_range[1] - np.asarray(y)) / (y_range[1] - y_range[0]) * height
        nx = np.clip(sx, np.asarray(w) / 2, width - np.asarray(w) / 2)
        ny = np.clip(sy, np.asarray(h) / 2, height - np.asarray(h) / 2)
        nudged = (nx - np.asarray(w) / 2, nx + np.asarray(w) / 2,
                  ny - np.asarray(h) / 2, ny + np.asarray(h) / 2)
        for i in range(len(x)):
            fits = (0 <= sx[i] <= width and 0 <= sy[i] <= height and w[i] <= width
                    and h[i] <= height)
            if fits and i not in kept:
                assert any(overlaps((nudged[0], nudged[1], nudged[2], nudged[3]), i, j)
                           and (-p[j], j) < (-p[i], i) for j in kept)


def test_larger_clusters_win_and_zooming_in_shows_more():
    # two labels 1 data unit apart, each 100 px wide: one fits at 10 units per 500 px
    x, y, w, h, sizes = [0.0, 1.0], [0.0, 0.0], [100, 100], [20, 20], [50, 900]
    out = layout_labels(x, y, w, h, sizes, (-5, 5), (-5, 5), (500, 500))
    assert out.index.tolist() == [1]
    np.testing.assert_allclose([out.x[0], out.y[0]], [1.0, 0.0])  # at its anchor
    zoomed = layout_labels(x, y, w, h, sizes, (-1.5, 2.5), (-2, 2), (500, 500))
    assert zoomed.index.tolist() == [1, 0]


def test_a_label_at_the_edge_is_nudged_inside():
    # anchor 0.1 units from the right edge; the box is 100 px = 2 units wide
    out = layout_labels([4.9], [0.0], [100], [20], [1], (-5, 5), (-5, 5), (500, 500))
    assert out.index.tolist() == [0]
    assert out.x[0] == 4.0 and out.y[0] == 0.0  # its right edge on the plot's edge
    assert layout_labels([5.1], [0.0], [100], [20], [1], (-5, 5), (-5, 5),
                         (500, 500)).index.size == 0  # an anchor out of view: no label


def test_at_most_max_labels_by_default_and_the_largest():
    rng = np.random.default_rng(0)
    n = 500
    x, y = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    sizes = rng.permutation(n)
    out = layout_labels(x, y, np.full(n, 4.0), np.full(n, 4.0), sizes, (0, 100), (0, 100),
                        (4000, 4000))
    assert len(out.index) == MAX_LABELS
    np.testing.assert_array_equal(np.sort(sizes[out.index])[::-1], np.arange(n - 1, n - 31, -1))


def test_nan_anchors_empty_inputs_and_empty_views():
    def count(*args):
        return layout_labels(*args).index.size

    assert count([np.nan], [0], [10], [10], [1], (-1, 1), (-1, 1), (100, 100)) == 0
    assert count([], [], [], [], [], (-1, 1), (-1, 1), (100, 100)) == 0
    assert count([0], [0], [10], [10], [1], (1, 1), (-1, 1), (100, 100)) == 0
    assert count([0], [0], [10], [10], [1], (-1, 1), (-1, 1), (0, 100)) == 0
    assert count([0], [0], [200], [10], [1], (-1, 1), (-1, 1), (100, 100)) == 0  # too wide


def test_text_box_grows_with_text_and_counts_wide_characters_double():
    narrow, height = text_box("abcd")
    assert text_box("abcdabcd")[0] > narrow and text_box("abcd", font_px=26)[1] > height
    assert text_box("\u732b\u732b")[0] == narrow  # two full-width cats = four latin letters


def test_fit_text_cuts_to_the_width_and_keeps_the_share():
    from embproj_panel.labels import fit_text

    text = "<img src=x onerror=window.__xss=1> (100%)"
    assert fit_text(text, 1000) == text
    cut = fit_text(text, 190)
    assert text_box(cut)[0] <= 190 < text_box(text)[0]
    assert cut.startswith("<img") and cut.endswith("\u2026 (100%)")
    assert fit_text("x" * 10_000, 200).endswith("\u2026") and text_box(fit_text("x" * 10_000, 200))[0] <= 200
    # nothing fits: the shortest cut text, which the layout then leaves out
    assert fit_text(text, 10) == "\u2026 (100%)"
