"""Pure builders: colour mapping and frames (colors), hit testing (spatial), HoloViews elements."""

from __future__ import annotations

import dataclasses

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import pytest
from bokeh.models import GlyphRenderer, HoverTool, ImageRGBA, Legend, LinearColorMapper

from embproj_panel import colors, spatial
from embproj_panel.views import plots

hv.extension("bokeh")

HOSTILE = "<img src=x onerror=window.__xss=1>"


# -- colours ------------------------------------------------------------------------------------


def test_palette_starts_with_category10_and_stays_distinct_up_to_50():
    ten = colors.categorical_palette(10)
    assert ten[:3] == ["#1f77b3", "#ff7e0e", "#2ba02b"]  # matplotlib/Bokeh's first colours
    fifty = colors.categorical_palette(50)
    assert len(set(fifty)) == 50
    with pytest.raises(ValueError, match="between 0 and 50"):
        colors.categorical_palette(51)


def test_categories_in_natural_order_with_missing_last_and_grey():
    values = np.array(["10", "2", None, "2", "1"], dtype=object)
    mapping = colors.color_mapping(values, "label")
    assert list(mapping.color_key) == ["1", "2", "10", colors.MISSING_LABEL]
    assert mapping.color_key[colors.MISSING_LABEL] == colors.NAN_COLOR
    assert list(mapping.values) == ["10", "2", colors.MISSING_LABEL, "2", "1"]
    assert mapping.note == ""


def test_colours_depend_on_the_whole_column_not_on_the_rows_drawn():
    values = np.array(["a", "b", "c", "a"], dtype=object)
    mapping = colors.color_mapping(values, "label")
    frame = colors.plot_frame(np.zeros((2, 2)), np.array([2, 3]), mapping)
    # Only "c" and "a" are drawn, yet every category (and so every colour) is still there.
    assert list(frame[colors.COLOR].cat.categories) == ["a", "b", "c"]
    assert list(frame[colors.COLOR]) == ["c", "a"]


def test_more_than_50_categories_keep_the_49_most_frequent_and_say_so():
    rng = np.random.default_rng(0)
    common = np.repeat([f"k{i}" for i in range(49)], 5)
    rare = np.array([f"r{i}" for i in range(20)])
    values = rng.permutation(np.concatenate([common, rare])).astype(object)
    mapping = colors.color_mapping(values, "word")
    assert len(mapping.color_key) == 50
    assert mapping.color_key[colors.OTHER_LABEL] == colors.OTHER_COLOR
    assert set(mapping.color_key) == {f"k{i}" for i in range(49)} | {colors.OTHER_LABEL}
    assert (np.asarray(mapping.values) == colors.OTHER_LABEL).sum() == 20
    assert "69 categories" in mapping.note and "20 others (20 rows)" in mapping.note


def test_numeric_colour_counts_missing_values():
    mapping = colors.color_mapping(np.array([1.0, np.nan, 3.0]), "score", kind="numeric")
    assert mapping.kind == "numeric"
    np.testing.assert_array_equal(np.isnan(mapping.values), [False, True, False])
    assert mapping.note.startswith("1 row(s) have no value in score")


def test_equal_labels_from_different_values_are_merged():
    mapping = colors.color_mapping(np.array([1, 1.0, None, np.nan], dtype=object), "x")
    assert list(mapping.color_key) == ["1", colors.MISSING_LABEL]


# -- frames and elements ------------------------------------------------------------------------


def test_plot_frame_uses_internal_names_and_checks_shapes():
    mapping = colors.color_mapping(np.array([HOSTILE, "b"], dtype=object), HOSTILE)
    frame = colors.plot_frame(np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([0, 1]), mapping)
    assert list(frame.columns) == [colors.X, colors.Y, colors.ROW, colors.COLOR]
    with pytest.raises(ValueError, match=r"coords must be \(n, 2\)"):
        colors.plot_frame(np.zeros((3, 2)), np.array([0, 1]), mapping)


def _frame(n=200, categories="abc", seed=0):
    rng = np.random.default_rng(seed)
    values = rng.choice(list(categories), n).astype(object)
    mapping = colors.color_mapping(values, "label")
    return colors.plot_frame(rng.normal(size=(n, 2)), np.arange(n), mapping), mapping


def test_points_element_dims_but_keeps_unselected_points():
    frame, mapping = _frame()
    element = plots.points_element(frame, mapping, alpha=0.6, selected=[3, 4])
    opts = hv.Store.lookup_options("bokeh", element, "plot").kwargs
    style = hv.Store.lookup_options("bokeh", element, "style").kwargs
    assert opts["selected"] == [3, 4]
    assert {"box_select", "lasso_select", "tap"} <= set(opts["tools"])
    assert style["nonselection_alpha"] == pytest.approx(0.09)
    assert style["cmap"] == mapping.color_key


def test_points_model_has_no_hover_and_no_image_data():
    frame, mapping = _frame()
    root = pn.panel(plots.points_element(frame, mapping)).get_root()
    (renderer,) = [r for r in root.select({"type": GlyphRenderer})]
    # The scatter sends coordinates and colour only: images go with the hover.
    assert set(renderer.data_source.data) == {colors.X, colors.Y, colors.COLOR}
    assert not list(root.select({"type": HoverTool}))


def test_point_colors_are_the_shadings_colours_for_every_kind():
    frame, mapping = _frame()
    labels = frame[colors.COLOR].astype(str).to_numpy()
    assert list(plots.point_colors(frame, mapping)) == [mapping.color_key[v] for v in labels]
    numbers = colors.color_mapping([0.0, 5.0, None, 10.0], "n", kind="numeric")
    numeric = colors.plot_frame(np.zeros((4, 2)), np.arange(4), numbers)
    palette = plots._palette("plasma")
    assert list(plots.point_colors(numeric, numbers, "plasma")) == [
        palette[0], palette[len(palette) // 2], colors.NAN_COLOR, palette[-1]]
    plain = colors.plot_frame(np.zeros((3, 2)), np.arange(3), colors.ColorMapping("none"))
    assert list(plots.point_colors(plain, colors.ColorMapping("none"))) == \
        [colors.SINGLE_COLOR] * 3


def _hex(rgb: np.ndarray) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb[:3]))


def _shade_window(frame: pd.DataFrame) -> dict:
    return dict(x_range=(float(frame[colors.X].min()) - 0.1, float(frame[colors.X].max()) + 0.1),
                y_range=(float(frame[colors.Y].min()) - 0.1, float(frame[colors.Y].max()) + 0.1),
                width=40, height=30, spread=0)


def test_shade_keeps_category_colours_for_any_subset():
    frame, mapping = _frame(n=500, categories="abcd")
    window = _shade_window(frame)
    only_c = frame[frame[colors.COLOR] == "c"]
    rgba = plots.shade(only_c, mapping, **window)
    assert rgba.shape == (30, 40, 4) and rgba.dtype == np.uint8
    drawn = rgba[rgba[..., 3] > 0]
    assert len(drawn)
    # Every drawn pixel has c's colour from the whole column's key (shade only varies alpha).
    assert {_hex(pixel) for pixel in drawn} == {mapping.color_key["c"]}


def test_shade_draws_a_selection_in_colour_over_grey_rows():
    frame, mapping = _frame(n=500, categories="abcd")
    window = _shade_window(frame)
    selected = np.flatnonzero((frame[colors.COLOR] == "b").to_numpy())
    rgba = plots.shade(frame, mapping, selected=selected, **window)
    colours = {_hex(pixel) for pixel in rgba[rgba[..., 3] > 0]}
    assert mapping.color_key["b"] in colours
    assert not colours & {mapping.color_key[c] for c in "acd"}  # the others are grey
    # The image's first row is the top of the plot: a point at the top is drawn there.
    top = frame.iloc[[int(np.argmax(frame[colors.Y].to_numpy()))]]
    single = plots.shade(top, mapping, **window)
    rows = np.flatnonzero(single[..., 3].any(axis=1))
    assert rows.tolist() and rows.max() < 5


def test_a_zoom_reuses_the_frames_point_colours(monkeypatch):
    """A view's ShadeCache makes the points' colours once per frame and colouring: the same
    images as without it, in any window, and made again for another frame or colouring."""
    made = []
    original = plots.category_channels
    monkeypatch.setattr(plots, "category_channels",
                        lambda data, color: made.append(len(data)) or original(data, color))
    frame, mapping = _frame(n=500, categories="abcd")
    window = _shade_window(frame)
    zoomed = dict(window, x_range=(-0.5, 0.5), y_range=(-0.5, 0.5))
    xs = np.sort(frame[colors.X].to_numpy())
    edges = dict(window, x_range=(xs[100], xs[400]))  # points on both edges are drawn
    cache = plots.ShadeCache()
    for view in (window, zoomed, edges, window):
        np.testing.assert_array_equal(plots.shade(frame, mapping, cache=cache, **view),
                                      plots.shade(frame, mapping, **view))
    assert made == [500] * 5  # once for the cache, once per uncached shade
    made.clear()
    other, other_mapping = _frame(n=300, categories="ab", seed=1)
    plots.shade(other, other_mapping, cache=cache, **window)
    plots.shade(other, other_mapping, cache=cache, **zoomed)
    recoloured = dataclasses.replace(other_mapping, color_key={
        label: "#000000" for label in other_mapping.color_key})
    plots.shade(other, recoloured, cache=cache, **window)
    # A selection shades a subset of the frame: never the cached frame's colours.
    plots.shade(other, recoloured, cache=cache, selected=np.arange(10), **window)
    assert made == [300, 300, 10]


def test_numeric_shading_uses_the_whole_columns_span_and_has_a_colorbar():
    values = np.linspace(0.0, 10.0, 200)
    mapping = colors.color_mapping(values, "score", kind="numeric")
    rng = np.random.default_rng(1)
    frame = colors.plot_frame(rng.normal(size=(200, 2)), np.arange(200), mapping)
    low = frame[frame[colors.COLOR] < 0.5]
    rgba = plots.shade(low, mapping, colormap=["#000000", "#ffffff"], **_shade_window(frame))
    # Only small values drawn: dark pixels, as on the colorbar, not stretched to white.
    assert rgba[rgba[..., 3] > 0][:, :3].max() < 40
    bar = pn.panel(plots.colorbar_overlay(mapping, "viridis")).get_root()
    (mapper,) = {m for m in bar.select({"type": LinearColorMapper})}
    assert (mapper.low, mapper.high) == (0.0, 10.0)
    assert plots.colorbar_overlay(colors.ColorMapping("none")) is None


def test_raster_element_sends_one_rgba_image():
    rgba = np.zeros((3, 4, 4), dtype=np.uint8)
    root = pn.panel(plots.raster_element(rgba, (0, 0, 4, 3))).get_root()
    (renderer,) = root.select({"type": GlyphRenderer})
    assert isinstance(renderer.glyph, ImageRGBA)
    assert renderer.data_source.data["image"][0].shape == (3, 4)


def test_legend_overlay_only_for_categories():
    _, mapping = _frame()
    legend = plots.legend_overlay(mapping)
    assert list(legend.dimension_values(colors.COLOR)) == ["a", "b", "c"]
    assert np.isnan(legend.dimension_values(colors.X)).all()  # never drawn
    root = pn.panel(legend).get_root()
    (bokeh_legend,) = root.select({"type": Legend})
    assert bokeh_legend.title == "label"
    assert plots.legend_overlay(colors.ColorMapping("none")) is None


# -- tooltips -----------------------------------------------------------------------------------


def test_tooltip_labels_are_user_text_and_templates_reference_internal_fields_only():
    tips = plots.tooltips(HOSTILE, [(HOSTILE, "t0")], with_image=True)
    labels = [label for label, _ in tips]
    templates = [template for _, template in tips]
    # Bokeh renders tuple labels as text nodes, so the name is kept verbatim...
    assert labels == ["", HOSTILE, HOSTILE, "row"]
    # ...and never reaches a template, where it would be HTML.
    assert all(HOSTILE not in template for template in templates)
    assert all("{safe}" not in template for template in templates)
    assert templates[0].startswith('<img src="@{thumb}"')
    assert templates[1:] == ["@{color}", "@{t0}", "@{row}"]


def test_inspect_element_carries_one_row_or_none():
    tips = plots.tooltips("label", [], with_image=True)
    fields = [colors.ROW, colors.COLOR, plots.THUMB]
    empty = plots.inspect_element(None, fields, tips)
    assert len(empty) == 0 and empty.vdims[0].name == colors.ROW
    record = {colors.X: 1.0, colors.Y: 2.0, colors.ROW: 7, colors.COLOR: "a",
              plots.THUMB: plots.BLANK_IMAGE}
    one = plots.inspect_element(record, fields, tips)
    assert len(one) == 1 and one.dimension_values(colors.ROW)[0] == 7
    root = pn.panel(one).get_root()
    (hover,) = root.select({"type": HoverTool})
    assert hover.tooltips == tips


# -- hit testing --------------------------------------------------------------------------------


@pytest.fixture
def cloud():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, 2000), rng.uniform(-1, 1, 2000)
    return x, y, spatial.PointIndex(x, y)


def test_nearest_within_radius_only(cloud):
    x, y, index = cloud
    found = index.nearest(x[17] + 1e-4, y[17], 0.01, 0.01)
    assert found == 17
    assert index.nearest(5.0, 5.0, 0.1, 0.1) is None
    assert index.nearest(float("nan"), 0.0, 0.1, 0.1) is None


def test_box_matches_brute_force(cloud):
    x, y, index = cloud
    expected = np.flatnonzero((x >= -0.2) & (x <= 0.5) & (y >= -0.7) & (y <= 0.1))
    np.testing.assert_array_equal(index.in_box(0.5, 0.1, -0.2, -0.7), expected)


def test_lasso_triangle_matches_barycentric_test(cloud):
    x, y, index = cloud
    (ax, ay), (bx, by), (cx, cy) = (-0.8, -0.8), (0.9, -0.5), (0.0, 0.9)
    det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    l1 = ((by - cy) * (x - cx) + (cx - bx) * (y - cy)) / det
    l2 = ((cy - ay) * (x - cx) + (ax - cx) * (y - cy)) / det
    inside = (l1 > 0) & (l2 > 0) & (1 - l1 - l2 > 0)
    got = index.in_polygon([ax, bx, cx], [ay, by, cy])
    np.testing.assert_array_equal(got, np.flatnonzero(inside))
    assert index.in_polygon([0, 1], [0, 1]).size == 0


def test_point_index_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="equal length"):
        spatial.PointIndex(np.zeros(3), np.zeros(4))


def test_frame_of_many_points_is_a_plain_numeric_frame():
    frame, _ = _frame(n=1000)
    assert frame[colors.X].dtype.kind == "f" and frame[colors.ROW].dtype == np.int64
    assert isinstance(frame[colors.COLOR].dtype, pd.CategoricalDtype)


# -- the scatter, as the view shows it ----------------------------------------------------------


def test_scatter_element_glyphs_restyle_the_same_data():
    color = colors.color_mapping(np.array(["a", "b", "a", "c"], dtype=object), "label")
    frame = colors.plot_frame(np.arange(8.0).reshape(4, 2), np.arange(4), color)
    style = plots.ScatterStyle(point_size=9, alpha=0.5, colormap="plasma")
    first = plots.scatter_element(frame, color, style, axis_label="UMAP")
    assert isinstance(first, hv.Points) and len(first) == 4
    options = hv.Store.lookup_options("bokeh", first, "style").kwargs
    assert options["size"] == 9 and options["alpha"] == 0.5
    selected = plots.scatter_element(frame, color, plots.ScatterStyle(point_size=3),
                                     selected=[1, 2], base=first)
    assert selected.data is first.data  # the same data object: nothing resent
    assert hv.Store.lookup_options("bokeh", selected, "plot").kwargs["selected"] == [1, 2]
    assert hv.Store.lookup_options("bokeh", selected, "style").kwargs["size"] == 3
    # The axis label is a plot option (rendering here would attach to whatever document an
    # earlier test server left current in this process).
    assert first.kdims[0].label == "x"
    assert hv.Store.lookup_options("bokeh", first, "plot").kwargs["xlabel"] == "UMAP 1"


def test_scatter_element_raster_is_one_image_of_the_window_and_size():
    color = colors.color_mapping(np.array(["a", "b"] * 50, dtype=object), "label")
    rng = np.random.default_rng(1)
    frame = colors.plot_frame(rng.normal(size=(100, 2)), np.arange(100), color)
    image = plots.scatter_element(frame, color, raster=True, window=(-1.0, -2.0, 1.0, 2.0),
                                  size=(50, 40))
    assert isinstance(image, hv.RGB) and image.bounds.lbrt() == (-1.0, -2.0, 1.0, 2.0)
    assert image.dimension_values(2, flat=False).shape == (40, 50)
    whole = plots.scatter_element(frame, color, raster=True)  # the frame's extent, 600 x 400
    assert whole.bounds.lbrt() == pytest.approx(plots.extent(frame))
    assert whole.dimension_values(2, flat=False).shape == (400, 600)
    huge = plots.scatter_element(frame, color, raster=True, size=(4000, 2000))
    height, width = huge.dimension_values(2, flat=False).shape
    assert width * height <= plots.MAX_RASTER_PIXELS and abs(width / height - 2) < 0.01
    # Selected: the others grey, the selection in its colour.
    grey = plots.scatter_element(frame, color, raster=True, selected=np.array([0]))
    rgba = np.dstack([grey.dimension_values(d, flat=False) for d in range(2, 6)])
    drawn = {tuple(int(c) for c in px[:3]) for px in rgba.reshape(-1, 4) if px[3] > 0}
    key_b = tuple(int(color.color_key["b"][i:i + 2], 16) for i in (1, 3, 5))
    # No unselected row keeps its colour; the grey context is there.
    assert key_b not in drawn and any(len(set(px)) == 1 for px in drawn)


def test_scatter_key_gives_a_raster_its_legend_or_colorbar():
    categories = colors.color_mapping(np.array(["a", "b"], dtype=object), "label")
    numbers = colors.color_mapping(np.array([1.0, 2.0]), "score", kind="numeric")
    assert plots.scatter_key(categories).vdims[0].label == "label"
    assert plots.scatter_key(numbers) is not None
    assert plots.scatter_key(colors.ColorMapping("none")) is None


def test_old_import_path_still_works():
    from embproj_panel import plots as old

    assert old.color_mapping is colors.color_mapping and old.PointIndex is spatial.PointIndex
    assert old.shade is plots.shade and old.DATASHADE_THRESHOLD == 50_000
