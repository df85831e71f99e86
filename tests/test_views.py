"""The projector's views through their public parts and Bokeh models: sources, selection
sync, hover, table, export, overlays, each part alone.

HoloViews' server-side stream callbacks schedule coroutines, so every test that updates a
rendered plot runs inside an asyncio loop (as a notebook kernel or ``panel serve`` does).
"""

from __future__ import annotations

import io

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import pytest
from _loop import in_loop
from bokeh.models import ColorBar, GlyphRenderer, HoverTool, ImageRGBA, Legend, Plot, Scatter

import embproj_panel as ep
from embproj_panel import datasets
from embproj_panel.colors import COLOR, ROW
from embproj_panel.images import Image
from embproj_panel.state import ProjectorState
from embproj_panel.table import Table
from embproj_panel.views import (
    MAX_DOWNLOAD_BYTES,
    MAX_RASTER_PIXELS,
    DownloadsView,
    Projector,
    ScatterView,
    SettingsView,
    StatusView,
    TableView,
    as_table,
    plots,
)
from embproj_panel.views.text import escaped

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")

HOSTILE = "<img src=x onerror=window.__xss=1>"




@pytest.fixture(scope="module")
def digits() -> Table:
    return datasets.digits()


def projector(source, **settings) -> Projector:
    view = Projector(source, **settings)
    view.state.wait(timeout=120)
    return view


def scatter_renderers(root):
    return [r for r in root.select({"type": GlyphRenderer}) if isinstance(r.glyph, Scatter)]


def main_scatter(root):
    """The renderer of the projected points (the largest scatter)."""
    return max(scatter_renderers(root), key=lambda r: len(r.data_source.data.get("x", [])))


# -- sources ------------------------------------------------------------------------------------


def test_sources_table_frame_array_and_logged_table(digits):
    import embproj_panel as ep

    assert as_table(digits) is digits
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.5]})
    assert as_table(frame).columns == ["a", "b"]
    array = as_table(np.arange(12, dtype=float).reshape(4, 3))
    assert array.column_types == {"embedding": "vector"} and len(array) == 4
    run = ep.init(project="demo", name="r1")
    ep.log({"tiny": frame})
    run.finish()
    assert len(as_table(("demo", "r1", "tiny"))) == 3
    with pytest.raises(TypeError, match="source must be"):
        as_table("digits")
    with pytest.raises(TypeError, match="2-D numeric"):
        as_table(np.zeros(3))


def test_settings_reach_the_state(digits):
    view = projector(digits, color_by="pixel_3_3", point_size=9, page_size=25)
    assert view.state.color.kind == "numeric" and view.state.point_size == 9
    assert view.table.page_size == 25 and view.table.tabulator.page_size == 25


# -- the scatter --------------------------------------------------------------------------------


@in_loop
def test_small_tables_carry_their_tooltips_with_the_glyphs(digits):
    """Digits: every row's thumbnail and fields are in the points' source, and the hover tool
    on the points shows them in the browser; no pointer stream asks the server."""
    view = projector(digits, tooltip_columns=["pixel_3_3"])
    root = pn.panel(view).get_root()
    assert view.scatter.instant_hover
    points = main_scatter(root)
    data = points.data_source.data
    assert len(data["x"]) == 1797
    rows = np.asarray(data[ROW])
    images = digits.get_column("image", convert_to="numpy")
    assert list(data[plots.THUMB][:3]) == [images[r].thumbnail_uri(8) for r in rows[:3]]
    pixels = digits.get_column("pixel_3_3", convert_to="numpy")
    assert list(data["t0"][:3]) == [f"{pixels[r]:.6g}" for r in rows[:3]]
    (hover,) = root.select({"type": HoverTool})
    assert hover.renderers == [points]
    assert hover.tooltips[0][1].startswith('<img src="@{thumb}"')
    assert [label for label, _ in hover.tooltips[1:]] == ["target", "pixel_3_3", "row"]
    assert not any("safe" in template for _, template in hover.tooltips)  # values stay text
    assert not [s for s in _streams(view) if isinstance(s, hv.streams.PointerXY)]
    (legend,) = root.select({"type": Legend})
    assert legend.title == "target"
    # A tooltip column change updates the same renderer's source and tool.
    view.state.tooltip_columns = ["pixel_4_4"]
    assert main_scatter(root) is points and "t0" in points.data_source.data
    assert [label for label, _ in hover.tooltips[1:]] == ["target", "pixel_4_4", "row"]


@in_loop
def test_above_the_byte_budget_hover_is_resolved_on_the_server(digits, monkeypatch):
    from embproj_panel.views import scatter

    monkeypatch.setattr(scatter, "INLINE_TOOLTIP_BYTES", 10_000)
    view = projector(digits)
    root = pn.panel(view).get_root()
    assert not view.scatter.instant_hover
    points = main_scatter(root)
    assert len(points.data_source.data["x"]) == 1797
    assert plots.THUMB not in points.data_source.data
    (hover,) = root.select({"type": HoverTool})
    assert points not in hover.renderers  # on the one-row ring the server fills
    assert hover.tooltips[0][1].startswith('<img src="@{thumb}"')
    assert [s for s in _streams(view) if isinstance(s, hv.streams.PointerXY)]


@in_loop
def test_hover_sends_the_hovered_row_only(digits):
    view = projector(digits, tooltip_columns=["pixel_3_3"])
    frame = view.state.frame
    x, y = float(frame["x"].iat[5]), float(frame["y"].iat[5])
    element = view.scatter.inspect(x, y)
    assert len(element) == 1
    row = int(element.dimension_values(ROW)[0])
    assert row == int(frame["row"].iat[5]) or np.hypot(
        frame["x"].iat[row] - x, frame["y"].iat[row] - y
    ) < 1e-6  # a point at the same spot may win the tie
    assert element.dimension_values(plots.THUMB)[0].startswith("data:image/png;base64,")
    assert element.dimension_values("t0")[0] == f"{digits.get_column('pixel_3_3')[row]:.6g}"
    assert len(view.scatter.inspect(1e6, 1e6)) == 0  # nothing near: nothing sent


@in_loop
def test_python_selection_highlights_points_and_fills_the_table(digits):
    view = projector(digits)
    root = pn.panel(view).get_root()
    view.selection = [3, 1, 2]
    points = main_scatter(root)
    assert sorted(points.data_source.selected.indices) == list(view.state.positions_of([1, 2, 3]))
    assert view.table.tabulator.selection == [1, 2, 3]
    assert sorted(view.table.tabulator.current_view.index) == [1, 2, 3]  # "show selection"
    view.table.table_mode = "all"
    assert len(view.table.tabulator.current_view) == 1797


@in_loop
def test_plot_selection_reaches_state_and_table(digits):
    view = projector(digits)
    pn.panel(view).get_root()
    (stream,) = [s for s in _streams(view) if isinstance(s, hv.streams.Selection1D)]
    stream.event(index=[0, 1, 2])
    rows = sorted(view.state.rows_of([0, 1, 2]).tolist())
    assert view.state.selection == rows and view.table.tabulator.selection == rows


def test_table_maps_listed_positions_to_rows_without_a_dict_per_row(digits):
    view = projector(digits)
    view.selection = [10, 11, 12]
    # What Panel reads when a cell is clicked (the one private attribute read here: the
    # override exists to replace it).
    mapping = view.table.tabulator._index_mapping
    assert not isinstance(mapping, dict)
    assert [mapping.get(i, i) for i in range(4)] == [10, 11, 12, 3]  # unknown -> itself
    assert dict(mapping) == {0: 10, 1: 11, 2: 12}
    view.state.select([])
    assert len(view.table.tabulator._index_mapping) == 1797


@in_loop
def test_table_click_selects_without_changing_the_listed_rows(digits):
    view = projector(digits)
    root = pn.panel(view).get_root()
    view.selection = [10, 11, 12]
    view.table.tabulator.selection = [11]
    assert view.state.selection == [11]
    assert sorted(view.table.tabulator.current_view.index) == [10, 11, 12]
    points = main_scatter(root)
    assert points.data_source.selected.indices == list(view.state.positions_of([11]))


@in_loop
def test_restyle_keeps_the_plot_and_its_data(digits):
    view = projector(digits)
    root = pn.panel(view).get_root()
    plot_object = view.scatter.pane.object
    points = main_scatter(root)
    source_data = points.data_source.data
    view.state.param.update(point_size=11, alpha=0.5)
    assert view.scatter.pane.object is plot_object  # not rebuilt: the zoom stays
    assert points.glyph.size == 11 and points.data_source.data is source_data


def the_figure(root):
    (figure,) = [f for f in root.select({"type": Plot}) if main_scatter(root) in f.renderers]
    return figure


def fill_colours(renderer) -> list:
    """Each drawn point's fill colour (HoloViews makes a constant column a glyph property)."""
    fill = renderer.glyph.fill_color
    if isinstance(fill, str):
        return [fill.lower()] * len(renderer.data_source.data["x"])
    return [str(c).lower() for c in renderer.data_source.data[fill.field]]


@in_loop
def test_colour_change_of_any_kind_updates_the_figure_in_place_and_keeps_the_zoom(digits):
    """Categories <-> numbers <-> none: the same figure, renderer and zoom; new colours, and
    the legend or colorbar shown with the column's name."""
    view = projector(digits)
    root = pn.panel(view).get_root()
    figure, renderer, plot_object = the_figure(root), main_scatter(root), view.scatter.pane.object
    (legend,) = root.select({"type": Legend})
    (colorbar,) = root.select({"type": ColorBar})
    figure.x_range.update(start=-5.0, end=5.0)  # as the browser zooms, and reports it
    figure.y_range.update(start=-4.0, end=4.0)
    (ranges,) = [s for s in _streams(view) if isinstance(s, hv.streams.RangeXY)]
    ranges.event(x_range=(-5.0, 5.0), y_range=(-4.0, 4.0))
    for column in ("pixel_3_3", None, "target", "pixel_4_4", "target"):
        view.state.color_by = column
        assert view.scatter.pane.object is plot_object
        assert the_figure(root) is figure and figure.id == the_figure(root).id
        assert main_scatter(root) is renderer
        assert (figure.x_range.start, figure.x_range.end) == (-5.0, 5.0)
        assert (figure.y_range.start, figure.y_range.end) == (-4.0, 4.0)
        color, frame = view.state.color, view.state.frame
        expected = [c.lower() for c in plots.point_colors(frame, color, "viridis")]
        assert fill_colours(renderer) == expected
        assert legend.visible == (color.kind == "categorical")
        assert colorbar.visible == (color.kind == "numeric")
        if color.kind == "categorical":
            assert legend.title == column
            # one item per category, each over its own swatch in the category's colour
            assert [item.label.value for item in legend.items] == list(color.color_key)
            assert [item.renderers[0].data_source.data[plots.FILL][0]
                    for item in legend.items] == list(color.color_key.values())
            assert expected[0] == color.color_key[str(digits.get_column(column)[
                int(frame[ROW].iat[0])])].lower()
        elif color.kind == "numeric":
            assert colorbar.title == column
            assert (colorbar.color_mapper.low, colorbar.color_mapper.high) == \
                plots.numeric_span(color)
        else:
            assert set(expected) == {plots.SINGLE_COLOR.lower()}


@in_loop
def test_raster_colour_change_of_any_kind_keeps_the_figure(digits):
    view = projector(digits, datashade_threshold=1000)
    root = pn.panel(view).get_root()
    (raster,) = rasters(root)
    (figure,) = [f for f in root.select({"type": Plot}) if raster in f.renderers]
    (legend,) = root.select({"type": Legend})
    (colorbar,) = root.select({"type": ColorBar})
    plot_object = view.scatter.pane.object
    before = raster_colours(raster)
    for column in ("pixel_3_3", None, "target"):
        view.state.color_by = column
        assert view.scatter.pane.object is plot_object
        assert rasters(root) == [raster]
        assert [f for f in root.select({"type": Plot}) if raster in f.renderers] == [figure]
        kind = view.state.color.kind
        assert (legend.visible, colorbar.visible) == (kind == "categorical", kind == "numeric")
        if column == "pixel_3_3":
            assert raster_colours(raster) != before and colorbar.title == "pixel_3_3"
    key = view.state.color.color_key
    assert rgb_of(key["0"]) in raster_colours(raster) and legend.title == "target"


def rasters(root) -> list:
    return [r for r in root.select({"type": GlyphRenderer}) if isinstance(r.glyph, ImageRGBA)]


def raster_colours(renderer) -> set[int]:
    """The distinct RGB values (packed, alpha dropped) of a raster renderer's drawn pixels."""
    image = np.asarray(renderer.data_source.data["image"][0]).astype(np.uint32)
    return set(np.unique(image[(image >> 24) > 0] & 0xFFFFFF).tolist())


def rgb_of(colour: str) -> int:
    """A hex colour as the packed little-endian RGB of an ImageRGBA pixel."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return r | g << 8 | b << 16


@in_loop
def test_above_the_threshold_the_scatter_is_a_raster_with_row_selection(digits):
    view = projector(digits, datashade_threshold=1000)
    root = pn.panel(view).get_root()
    (raster,) = rasters(root)  # one image: no hidden layers to resend
    # Glyphs left: the hover ring and the legend's one NaN point per category, no rows.
    assert all(len(r.data_source.data.get("x", [])) <= 10 for r in scatter_renderers(root))
    (legend,) = root.select({"type": Legend})
    # One legend item per category over its own swatch: all ten, in the key's colours.
    key = view.state.color.color_key
    assert [item.label.value for item in legend.items] == list(key)
    assert [item.renderers[0].data_source.data[plots.FILL][0] for item in legend.items] == list(
        key.values())
    assert "drawn with Datashader" in view.state.status
    key = view.state.color.color_key
    assert rgb_of(key["0"]) in raster_colours(raster)
    frame = view.state.frame
    box = next(s for s in _streams(view) if isinstance(s, hv.streams.BoundsXY))
    box.event(bounds=(-5.0, -5.0, 5.0, 5.0))
    inside = (frame.x.between(-5, 5) & frame.y.between(-5, 5)).to_numpy()
    assert view.state.selection == sorted(frame.row[inside].tolist())
    lasso = next(s for s in _streams(view) if isinstance(s, hv.streams.Lasso))
    lasso.event(geometry=np.array([[-5.0, -5.0], [5.0, -5.0], [5.0, 5.0], [-5.0, 5.0]]))
    assert view.state.selection == sorted(frame.row[inside].tolist())
    # Selected: still one image, updated in place, with the unselected rows grey.
    view.selection = np.flatnonzero(digits.get_column("target", "numpy") == "3").tolist()
    assert rasters(root) == [raster]
    colours = raster_colours(raster)
    assert rgb_of(key["3"]) in colours
    assert rgb_of(key["0"]) not in colours
    assert rgb_of(plots.CONTEXT_COLORS[1]) in colours or rgb_of(plots.CONTEXT_COLORS[0]) in colours


@in_loop
def test_raster_ignores_a_layout_shift_of_a_few_pixels_but_not_a_resize(digits):
    view = projector(digits, datashade_threshold=1000)
    root = pn.panel(view).get_root()
    (raster,) = rasters(root)
    sizes = [s for s in _streams(view) if isinstance(s, hv.streams.PlotSize)]

    def report(width, height):
        for stream in sizes:
            stream.event(width=width, height=height)

    report(800, 500)
    image = raster.data_source.data["image"][0]
    assert image.shape == (500, 800)
    report(804, 497)  # a scrollbar or a wrapped line: nothing re-drawn, nothing sent
    assert raster.data_source.data["image"][0] is image
    report(1000, 500)
    assert raster.data_source.data["image"][0].shape == (500, 1000)
    report(2000, 1000)  # a huge frame: a coarser image, stretched by the browser
    height, width = raster.data_source.data["image"][0].shape
    assert width * height <= MAX_RASTER_PIXELS and abs(width / height - 2) < 0.01


def _streams(view: Projector) -> list:
    return view.scatter.streams


# -- the table ----------------------------------------------------------------------------------


def hostile_table() -> Table:
    rng = np.random.default_rng(0)
    images = np.empty(30, dtype=object)
    images[:] = [Image(rng.random((4, 4))) for _ in range(30)]
    return Table(dataframe=pd.DataFrame({
        HOSTILE: np.array([HOSTILE, "b", "c"] * 10, dtype=object),
        "emb": list(rng.normal(size=(30, 4))),
        "picture": images,
    }))


def test_table_sends_no_vectors_and_escapes_titles():
    view = projector(hostile_table())
    value = view.table.tabulator.value
    assert list(value.columns) == [plots.THUMB, "c0"]  # no "emb" vector, no raw images
    assert view.table.tabulator.titles["c0"] == "&lt;img src=x onerror=window.__xss=1&gt;"
    assert view.state.color_by == HOSTILE
    assert view.state.color.color_key.keys() >= {HOSTILE, "b", "c"}


def test_tooltip_choice_labels_are_escaped_and_linked():
    view = projector(hostile_table())
    choice = view.settings.tooltip_choice
    # Choices.js renders option labels as HTML: the widget gets escaped labels.
    assert "&lt;img src=x onerror=window.__xss=1&gt;" in choice.options
    assert HOSTILE not in choice.options
    choice.value = [HOSTILE]
    assert view.state.tooltip_columns == [HOSTILE]
    view.state.tooltip_columns = []
    assert choice.value == []


def test_embedding_chooser_is_compact_searchable_escaped_and_linked():
    """Hundreds of columns: a searchable MultiChoice with a count and an "All numeric" button,
    never a list box with a line per column; labels escaped (Choices.js renders HTML)."""
    rng = np.random.default_rng(0)
    columns = {f"c{i}": rng.normal(size=30) for i in range(300)}
    columns[HOSTILE] = rng.normal(size=30)
    columns["label"] = np.array(["a", "b", "c"] * 10, dtype=object)
    view = projector(Table(dataframe=pd.DataFrame(columns)), embedding_columns=["c0", "c1"])
    settings = view.settings
    choice = settings.embedding_choice
    assert isinstance(choice, pn.widgets.MultiChoice)
    assert not [w for w in pn.panel(settings).select(pn.widgets.MultiSelect)]
    assert "&lt;img src=x onerror=window.__xss=1&gt;" in choice.options
    assert HOSTILE not in choice.options
    assert choice.value == ["c0", "c1"]
    assert settings.embedding_count.value == "2 of 301 columns"
    choice.value = ["c2", HOSTILE]
    assert view.state.embedding_columns == ["c2", HOSTILE]
    settings.all_numeric.clicks += 1
    assert len(view.state.embedding_columns) == 301 and "label" not in view.state.embedding_columns
    assert choice.value == view.state.embedding_columns
    assert settings.embedding_count.value == "301 of 301 columns"


@in_loop
def test_the_map_fills_its_pane_with_the_legend_outside(digits):
    """The figure stretches both ways in a pane that grows with the window; the legend sits
    in the figure's right panel, outside the data frame."""
    from embproj_panel.views.projector import main_area

    view = projector(digits)
    root = pn.panel(view).get_root()
    (figure,) = [f for f in root.select({"type": Plot}) if main_scatter(root) in f.renderers]
    assert figure.sizing_mode == "stretch_both"
    (legend,) = root.select({"type": Legend})
    assert legend in figure.right and legend not in figure.center
    area = main_area(view.parts)
    map_column = area.objects[0]
    assert area.height is None and map_column.height is None  # not a fixed height
    assert "100vh" in map_column.styles["height"]


def test_thumbnails_are_made_for_the_visible_page_only(digits):
    view = projector(digits, page_size=7)
    made = view.table.tabulator.value[plots.THUMB] != plots.BLANK_IMAGE
    assert made.sum() == 7 and made.iloc[:7].all()
    view.table.tabulator.page = 3
    made = view.table.tabulator.value[plots.THUMB] != plots.BLANK_IMAGE
    assert made.sum() == 14 and made.iloc[14:21].all()


# -- export -------------------------------------------------------------------------------------


def test_downloads_of_the_selection(digits):
    view = projector(digits)
    view.selection = [2, 7]
    downloads = view.downloads
    csv = downloads.csv.callback().getvalue().decode()
    assert csv.splitlines()[0].startswith("row,x,y,target")
    assert len(csv.splitlines()) == 3
    parquet = pd.read_parquet(io.BytesIO(downloads.parquet.callback().getvalue()))
    assert list(parquet["row"] if "row" in parquet else parquet.index) == [2, 7]
    downloads.rows.value = "all"
    assert downloads.csv.filename == "embproj-all.csv"
    assert len(downloads.csv.callback().getvalue().decode().splitlines()) == 1798


def test_oversized_download_is_refused_with_a_message(digits):
    view = projector(digits)
    downloads = view.downloads
    assert downloads.max_bytes == MAX_DOWNLOAD_BYTES > 2**20
    downloads.param.update(max_bytes=100)
    downloads.rows.value = "all"
    assert downloads.csv.callback() is None
    assert downloads.alert.visible and "selected_dataframe" in downloads.alert.object
    downloads.max_bytes = MAX_DOWNLOAD_BYTES
    assert downloads.csv.callback() is not None and not downloads.alert.visible


def test_error_and_status_are_escaped():
    # A numeric colour column with a missing value puts its (hostile) name in the status line.
    rng = np.random.default_rng(0)
    score = rng.random(30)
    score[0] = np.nan
    table = Table(dataframe=pd.DataFrame({HOSTILE: score, "emb": list(rng.normal(size=(30, 4)))}))
    view = projector(table, color_by=HOSTILE)
    status = view.status
    assert HOSTILE in view.state.status  # the hostile text does reach the status...
    assert escaped(HOSTILE) in status.line.object  # ...and is shown as text
    assert "<img" not in status.line.object
    # An error message with user text: an embedding column that cannot be projected.
    table = Table(dataframe=pd.DataFrame({HOSTILE: [np.nan] * 5, "b": np.arange(5.0)}))
    view = projector(table, embedding_columns=[HOSTILE])
    assert HOSTILE in view.state.error
    assert status is not view.status and view.status.alert.visible
    assert escaped(HOSTILE) in view.status.alert.object and "<img" not in view.status.alert.object


def test_selected_dataframe_delegates_to_the_state(digits):
    view = projector(digits)
    view.selection = [0]
    assert view.selected_dataframe.index.tolist() == [0]
    assert view.selection == [0]


# -- the parts, alone and composed ----------------------------------------------------------------


def test_projector_is_its_public_parts_over_one_state(digits):
    view = projector(digits)
    assert [view.parts[name] for name, _cls, _region in ep.views.PARTS] == [
        view.settings, view.clusters, view.images, view.status, view.trust, view.search_box,
        view.isolation, view.scatter, view.table, view.neighbors_panel, view.downloads,
        view.gallery,
    ]
    assert all(part.state is view.state for part in view.parts.values())
    assert ep.Projector is Projector and ep.views.ScatterView is ScatterView


@in_loop
def test_each_part_works_alone_over_a_state(digits):
    state = ProjectorState(table=digits)
    state.wait(timeout=120)
    scatter = ScatterView(state)
    root = pn.panel(scatter).get_root()
    assert len(main_scatter(root).data_source.data["x"]) == 1797
    table = TableView(state, page_size=5)
    state.select([4, 2])
    assert table.tabulator.selection == [2, 4] and main_scatter(root).data_source.selected.indices
    assert sorted(table.tabulator.current_view.index) == [2, 4]
    downloads = DownloadsView(state)
    assert len(downloads.frame()) == 2
    status = StatusView(state)
    assert status.line.object.startswith("1,797 of 1,797 rows")
    settings = SettingsView(state)
    state.param.update(method="umap")
    assert settings.compute_button.color == "warning"  # settings changed, not yet computed
    for part in (table, downloads, status, settings):
        assert pn.panel(part).get_root() is not None


def selection_rings(scatter: ScatterView):
    """An overlay as another view would write one: rings around the selected rows."""
    state = scatter.state

    def rings(selection):
        frame = state.frame.iloc[state.positions_of(selection)]
        return hv.Points(frame, kdims=["x", "y"], vdims=[ROW]).opts(
            size=14, fill_alpha=0, line_color="#ff00ff", tools=[])

    return hv.DynamicMap(rings, streams=[hv.streams.Params(state, ["selection"])])


def overlay_xs(root) -> list[float]:
    """The x of every point the overlay draws."""
    (ring,) = [r for r in scatter_renderers(root) if r.glyph.line_color == "#ff00ff"]
    return sorted(float(v) for v in ring.data_source.data["x"])


@pytest.mark.parametrize("threshold", [50_000, 1000], ids=["glyphs", "raster"])
@in_loop
def test_overlays_draw_over_glyphs_and_rasters_and_redraw_themselves(digits, threshold):
    view = projector(digits, datashade_threshold=threshold)
    view.scatter.overlays = [selection_rings]
    root = pn.panel(view).get_root()
    assert view.scatter.raster is (threshold < 1797)
    assert overlay_xs(root) == []
    plot_object = view.scatter.pane.object
    view.selection = [5, 9]
    frame = view.state.frame
    expected = sorted(float(x) for x in frame["x"].iloc[view.state.positions_of([5, 9])])
    assert overlay_xs(root) == expected  # the overlay's own stream redrew it...
    assert view.scatter.pane.object is plot_object  # ...without rebuilding the scatter


def test_a_new_part_is_one_line_in_parts(digits, monkeypatch):
    from embproj_panel.views import projector as composition

    class RowCount(ep.views.StateView):
        def __panel__(self):
            return pn.pane.Str(f"{len(self.state.selection)} selected")

        def scatter_overlay(self, scatter):
            return selection_rings(scatter)

    monkeypatch.setattr(composition, "PARTS", [*composition.PARTS, ("count", RowCount, "side")])
    view = projector(digits)
    assert isinstance(view.count, RowCount) and view.count.state is view.state
    assert view.count.scatter_overlay in view.scatter.overlays
    assert composition.side_column(view.parts).objects[-1].object == "0 selected"


@in_loop
def test_colour_colormap_and_tooltip_changes_keep_the_figure(digits):
    """Same kind of colouring: the figure and its points renderer are updated, not rebuilt."""
    view = projector(digits, color_by="pixel_3_3")
    root = pn.panel(view).get_root()
    plot_object = view.scatter.pane.object
    (figure,) = [f for f in root.select({"type": Plot}) if f.renderers]
    renderer = main_scatter(root)
    for change in ({"color_by": "pixel_4_4"}, {"colormap": "plasma"},
                   {"tooltip_columns": ["pixel_2_2"]}, {"hover_image": None}):
        view.state.param.update(**change)
        assert view.scatter.pane.object is plot_object
        assert [f for f in root.select({"type": Plot}) if f.renderers] == [figure]
        assert main_scatter(root) is renderer
    colours = renderer.data_source.data[COLOR]  # the tooltip's values travel with the glyphs
    expected = digits.get_column("pixel_4_4", convert_to="numpy")[view.state.frame[ROW]]
    assert np.allclose(np.asarray(colours, dtype=float), expected.astype(float))
    (colorbar,) = root.select({"type": ColorBar})
    assert colorbar.title == "pixel_4_4"  # follows the column
    palette = colorbar.color_mapper.palette
    assert palette == hv.plotting.util.process_cmap("plasma", len(palette))
    assert fill_colours(renderer) == [
        c.lower() for c in plots.point_colors(view.state.frame, view.state.color, "plasma")]
    (hover,) = root.select({"type": HoverTool})
    assert [label for label, _ in hover.tooltips] == ["pixel_4_4", "pixel_2_2", "row"]


def test_a_rendered_projector_switches_to_a_table_without_its_colour_column():
    # The colour menu, shown in a page, picks another column as soon as the old one is gone;
    # the old projection used to be redrawn with the new, shorter table and the switch failed
    # (IndexError in the scatter; in the app the table stayed half-switched).
    rng = np.random.default_rng(0)
    first = Table(dataframe=pd.DataFrame({"label": list("abc") * 100, "x": rng.normal(size=300),
                                          "y": rng.normal(size=300)}))
    second = Table(dataframe=pd.DataFrame({"other": list("abc") * 10, "u": rng.normal(size=30),
                                           "v": rng.normal(size=30)}))
    projector = Projector(first, color_by="label")
    pn.panel(projector).get_root()
    projector.state.wait()
    projector.state.set_table(second)
    projector.state.wait()
    assert projector.state.embedding_columns == ["u", "v"]
    assert projector.state.frame[ROW].max() < 30 and len(projector.state.frame) == 30
    projector.state.close()


def test_a_long_status_keeps_the_lines_height_and_scrolls():
    # Issue 13, item 4: in a notebook cell beside JupyterLab's file browser the status line
    # was cut mid-sentence with no way to read the rest. It keeps two lines' height (a
    # wrapping status would resize the plot) and scrolls what does not fit. (The notebook
    # test measures the line in the page.)
    rng = np.random.default_rng(0)
    view = projector(Table(dataframe=pd.DataFrame({"emb": list(rng.normal(size=(20, 4)))})))
    model = view.status.line.get_root()
    long_status = "a status that does not fit " * 40
    with pn.io.hold():
        view.status.line.object = long_status
    assert model.height == 36
    assert model.styles["overflow-y"] in ("auto", "scroll")
    assert long_status.strip() in model.text  # all of it is there, to scroll to
