"""``TableView``: the paged table of a :class:`ProjectorState`'s rows, linked to the selection.

The table writes the selection (row clicks) and reads it: its highlighted rows, and, with
"Show selection", which rows it lists (the rows selected in the plot or from Python; a click
in the table then picks among those rows without changing the list). With an isolated
projection it lists only the isolated rows. It sends the browser one page at a time, never
vectors or raw images; the thumbnails of a page are made when the page is shown. A lazy
dataset's table (:class:`~embproj_panel.dataset_table.DatasetTable`) is held as its row index
only: each page's cells are read from their Parquet row groups when the page is sent; it sorts
on its numeric and categorical columns (one column's keys read and kept), and its other
columns' headers say why they do not sort. Column titles are user text: escaped (Tabulator renders titles as HTML), and
the data uses internal field names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param

from embproj_panel.dataset_table import DatasetTable
from embproj_panel.state import ProjectorState
from embproj_panel.table import Table
from embproj_panel.views.base import StateView
from embproj_panel.views.plots import BLANK_IMAGE, THUMB
from embproj_panel.views.text import escaped

__all__ = ["TABLE_HIGHLIGHT_MAX", "TableView"]

#: Selections up to this many rows are also highlighted in the table (larger ones are listed).
TABLE_HIGHLIGHT_MAX = 10_000

_TABLE_THUMB_PX = 40

# The header tooltip of a lazy table's column that does not sort.
_UNSORTABLE = ("Not sortable: this dataset stays on disk, and sorting reads a whole column, "
               "which is done only for numbers and labels.")


class _IndexLabels(Mapping):
    """Row position in the Tabulator's processed frame -> that row's index label.

    A read-only view of the index, in place of the dict with one entry per row that Panel
    builds on every value or filter change (~100 MB and ~0.3 s at a million rows).
    """

    def __init__(self, index: pd.Index) -> None:
        self._index = index

    def __getitem__(self, position: int) -> Any:
        if not isinstance(position, (int, np.integer)) or not 0 <= position < len(self._index):
            raise KeyError(position)
        return self._index[position]

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self._index)))


class _RowIndex(pd.DataFrame):
    """A lazy table's Tabulator value: the row index alone, no cell, typed as its columns.

    Panel 1.9's ``Tabulator._config_columns`` (private) reads each column's dtype from
    ``value.dtypes``: here they are those of the page frames (:attr:`column_dtypes`).
    """

    _metadata = ["column_dtypes"]
    column_dtypes: pd.Series | None = None

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        # Filtered copies stay of this type: Panel takes a filter's result for the filtered
        # frame only when ``type(result) is type(value)``.
        return _RowIndex

    @property
    def dtypes(self) -> pd.Series:
        return super().dtypes if self.column_dtypes is None else self.column_dtypes


class _Tabulator(pn.widgets.Tabulator):
    """Panel's Tabulator without a per-row Python dict (see :class:`_IndexLabels`), and
    without the browser's restatement of its page selection (see :meth:`_process_events`).
    """

    def _process_events(self, events: dict[str, Any]) -> None:
        # With remote pagination the browser's ``source.selected.indices`` holds the
        # selected rows *of its page* only, and Panel's tabulator.ts reassigns it after
        # every patch (our page thumbnails are patches): Panel 1.9 then takes those page
        # rows for the whole selection, and a 794-row plot selection collapsed to the 10
        # rows of the visible page, 1-1.5 s after the drag, in JupyterLab. A person's clicks
        # never come this way (remote pagination sends them as SelectionEvents, handled in
        # _process_event), so the restatement is dropped.
        if self.pagination == "remote":
            events = {key: value for key, value in events.items() if key != "indices"}
        if self.disabled:
            # Read-only: data from the browser is never an edit, only its copy of the page
            # (sent back after a patch). Panel 1.9 took it for edits and, while the value
            # was being replaced, raised in _update_column, in the middle of a notebook
            # message (see embproj_panel._notebook_comm.keep_held).
            events = {key: value for key, value in events.items() if key != "data"}
        super()._process_events(events)

    #: For a lazy table: ``(columns, read, order)``, a 0-row frame typing the columns, a
    #: function of row positions -> their page frame, and one of (row positions, sorters)
    #: -> the positions' sorted order. ``value`` is then only an index.
    _lazy: tuple[pd.DataFrame, Callable[[np.ndarray], pd.DataFrame],
                 Callable[[np.ndarray, list[dict[str, Any]]], np.ndarray]] | None = None

    # The three overrides below are of *private* methods of Panel 1.9 (widgets/tables.py):
    # with a lazy table, ``value`` holds the row index alone (a RangeIndex costs nothing;
    # the "Show selection" filter keeps working on it), the columns are typed from a 0-row
    # frame, and each page's cells are read when the page is sent. If a Panel upgrade changes
    # these methods, the lazy-table test of test_dataset_app fails.
    def _get_fields(self) -> list[str]:
        if self._lazy is None:
            return super()._get_fields()
        return self.indexes + list(self._lazy[0].columns)

    def _get_columns(self) -> list[Any]:
        if self._lazy is None or self.value is None:
            return super()._get_columns()
        return self._get_column_definitions(self._get_fields(), self._lazy[0])

    def _get_data(self) -> tuple[Any, Any]:
        if self._lazy is None or self.value is None or self.pagination != "remote":
            return super()._get_data()
        from bokeh.models import ColumnDataSource

        df = self._filter_dataframe(self.value)  # the filtered index
        if self.sorters:  # sorted on keys of the sorted columns alone (DatasetTable.sort_key)
            df = df.iloc[self._lazy[2](df.index.to_numpy(), list(self.sorters))]
        nrows = self.page_size or self.initial_page_size
        start = (self.page - 1) * nrows
        page = self._lazy[1](df.index[start:start + nrows].to_numpy())
        data = ColumnDataSource.from_df(page).items()
        return df, {str(k): self._process_column(v, k, page) for k, v in data}

    def _update_index_mapping(self) -> None:
        # Overrides a *private* method of Panel 1.9 (widgets/tables.py), whose only reader
        # does ``self._index_mapping.get(row, row)`` when a cell is clicked: any Mapping
        # serves. If a Panel upgrade changes this, delete the override (and this class).
        processed = self._processed
        if isinstance(processed, pd.DataFrame):
            self._index_mapping = _IndexLabels(processed.index)
        else:
            self._index_mapping = {}


class _TableFilter(param.Parameterized):
    """What the table lists: every row, or the rows of the last plot/Python selection."""

    rows = param.List(default=[], doc="Rows listed when showing the selection.")
    mode = param.Selector(default="selection", objects=["selection", "all"])
    isolated = param.List(default=[], doc="The isolated rows (all rows: empty).")


def _filter_rows(df: pd.DataFrame, rows: list[int], mode: str,
                 isolated: list[int] | None = None) -> pd.DataFrame:
    if isolated:  # an isolated projection: its rows are "all" the rows
        df = df.loc[df.index.intersection(isolated)]
    if mode == "all" or not rows:
        return df
    return df.loc[df.index.intersection(rows)]


class TableView(StateView):
    """The table: every non-vector column, a thumbnail column, linked to ``state.selection``.

    Parameters
    ----------
    state
        The state whose table and selection it shows.
    page_size, table_mode
        As below.
    """


    page_size = param.Integer(default=10, bounds=(5, 200), doc="""
        Rows per table page (the browser gets one page at a time).""")

    table_mode = param.Selector(default="selection", objects=["selection", "all"], doc="""
        With a selection, list only the selected rows ("selection") or every row ("all").""")

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        self._filter = _TableFilter(mode=self.table_mode)
        self._thumbs: np.ndarray | None = None
        self._table_of: Table | None = None  # the table the Tabulator's frame was built from
        self._writing = False  # this view is setting the state's selection
        self._syncing = False  # this view is setting the Tabulator's selection
        #: The Tabulator (one page at a time; ``selection`` holds table row positions).
        self.tabulator = _Tabulator(
            None, pagination="remote", page_size=self.page_size, selectable=True,
            disabled=True, show_index=True, sizing_mode="stretch_both", min_height=200,
            layout="fit_data_fill", header_align="left",
        )
        self.tabulator.add_filter(
            pn.bind(_filter_rows, rows=self._filter.param.rows, mode=self._filter.param.mode,
                    isolated=self._filter.param.isolated)
        )
        self.tabulator.param.watch(self._on_table_selection, ["selection"])
        self.tabulator.param.watch(self._fill_thumbnails, ["page", "sorters", "filters", "value"])
        self._filter.param.watch(self._fill_thumbnails, ["rows", "mode", "isolated"])
        #: "Show selection" / "Show all".
        self.mode_toggle = pn.widgets.RadioButtonGroup.from_param(
            self.param.table_mode, options={"Show selection": "selection", "Show all": "all"},
            color="default", variant="outline", margin=(5, 5, 5, 10), width=220, height=36,
        )
        # Wide enough for "Clear selection (1,000,000)" on one line: its label must not
        # wrap and change the layout (see __panel__).
        #: Clears the selection; its label counts the selected rows.
        self.clear_button = pn.widgets.Button(label="Clear selection", color="danger",
                                              variant="outline", margin=(5, 5), disabled=True,
                                              width=205, height=36)
        self.clear_button.on_click(lambda event: self.state.select([]))
        state = self.state
        state.param.watch(self._on_table, ["table"])
        state.param.watch(self._on_hover_image, ["hover_image"])
        state.param.watch(self._on_selection, ["selection"])
        state.param.watch(self._on_derived, ["derived"])
        state.param.watch(self._on_isolated, ["isolated"])
        self._on_table()

    def __panel__(self) -> pn.viewable.Viewable:
        # A fixed height: the selection count in the Clear button must never change the
        # layout (a moved or resized plot frame would be re-rasterized and re-sent).
        selection = pn.Row(self.mode_toggle, self.clear_button, sizing_mode="stretch_width",
                           height=46)
        return pn.Column(selection, self.tabulator, sizing_mode="stretch_both", margin=0)

    # -- selection ------------------------------------------------------------------------------
    def _on_selection(self, *events: Any) -> None:
        selection = list(self.state.selection)
        with pn.io.hold():
            if not self._writing:
                # The table lists what was selected in the plot (or from Python); a click in
                # the table then picks among those rows without changing the list.
                self._filter.rows = selection
            # Panel maps a Tabulator selection row by row in Python (~3 µs a row): a huge
            # selection is listed (above) but not also highlighted row by row.
            highlighted = selection if len(selection) <= TABLE_HIGHLIGHT_MAX else []
            if sorted(self.tabulator.selection) != highlighted:
                self._syncing = True
                try:
                    self.tabulator.selection = highlighted
                finally:
                    self._syncing = False
            count = len(selection)
            self.clear_button.param.update(
                label=f"Clear selection ({count:,})" if count else "Clear selection",
                disabled=not count,
            )

    def _on_table_selection(self, event: param.parameterized.Event) -> None:
        if self._syncing:
            return
        rows = sorted(int(r) for r in event.new)
        if rows == list(self.state.selection):
            return
        self._writing = True
        try:
            self.state.select(rows)
        finally:
            self._writing = False

    def _on_isolated(self, *events: Any) -> None:
        self._filter.isolated = list(self.state.isolated)

    @param.depends("table_mode", watch=True)
    def _on_table_mode(self) -> None:
        self._filter.mode = self.table_mode

    @param.depends("page_size", watch=True)
    def _on_page_size(self) -> None:
        self.tabulator.page_size = self.page_size

    # -- the table ------------------------------------------------------------------------------
    def _shown_columns(self, table: Table) -> dict[str, Any]:
        """Internal field name -> the table column it shows (never vectors, never images)."""
        return {f"c{i}": name for i, (name, info) in enumerate(table.schema.columns.items())
                if info.kind not in ("vector", "image")}

    def _page_frame(self, table: DatasetTable, rows: np.ndarray) -> pd.DataFrame:
        """The cells of ``rows`` of a lazy table, read from their row groups (one page)."""
        fields = self._shown_columns(table)
        image = self.state.hover_image or (table.schema.of_kind("image") or [None])[0]
        names = list(fields.values()) + ([image] if image is not None else [])
        part = table.take(rows, list(dict.fromkeys(names)))
        data: dict[str, Any] = {}
        if image is not None:
            data[THUMB] = np.array(
                [BLANK_IMAGE if cell is None else cell.thumbnail_uri(_TABLE_THUMB_PX)
                 for cell in part.get_column(image, convert_to="numpy")], dtype=object)
        for field, name in fields.items():
            data[field] = part.get_column(name, convert_to="numpy")
        for field, (_, found) in self._derived_fields().items():
            data[field] = found.values[rows]
        return pd.DataFrame(data, index=pd.Index(rows, name="row"), columns=list(data))

    def _lazy_order(self, table: DatasetTable, rows: np.ndarray,
                    sorters: list[dict[str, Any]]) -> np.ndarray:
        """The order of ``rows`` under Tabulator's ``sorters``, from the columns' sort keys.

        As Panel sorts a frame: the first sorter first, empty cells last either way, ties in
        the listed order.
        """
        fields, derived = self._shown_columns(table), self._derived_fields()
        keys = []
        for sorter in reversed(sorters):  # np.lexsort sorts on its last key first
            field = sorter.get("field")
            if field in fields and table.sortable(fields[field]):
                key = table.sort_key(fields[field])[rows]
            elif field in derived and np.asarray(derived[field][1].values).dtype.kind in "biuf":
                key = np.asarray(derived[field][1].values, dtype=np.float64)[rows]  # in memory
            elif field == "row":
                key = rows.astype(np.float64)
            else:
                continue  # not sortable here (the header says so)
            keys.append(-key if sorter.get("dir") == "desc" else key)
        return np.lexsort(keys) if keys else np.arange(len(rows))

    def _derived_fields(self) -> dict[str, Any]:
        """Internal field name -> a derived column (faithfulness) the table shows after its own."""
        return {f"d{j}": (name, found) for j, (name, found) in enumerate(self.state.derived.items())}

    def _on_table(self, *events: Any) -> None:
        """A new table: new columns (internal names, escaped titles), no thumbnails yet."""
        state = self.state
        table = state.table
        self._thumbs = None
        self._table_of = table
        self.tabulator._lazy = None
        if table is None:
            self.tabulator.value = None
            return
        schema = table.schema
        lazy = isinstance(table, DatasetTable)
        data: dict[str, Any] = {}
        titles: dict[str, str] = {}
        image_columns = schema.of_kind("image")
        if image_columns:
            titles[THUMB] = escaped(state.hover_image or image_columns[0])
            if not lazy:
                data[THUMB] = np.full(len(table), BLANK_IMAGE, dtype=object)
                self._thumbs = np.zeros(len(table), dtype=bool)
        hidden = []
        embedding = set(schema.default_embedding)
        for field, name in self._shown_columns(table).items():
            if not lazy:
                data[field] = table.get_column(name, convert_to="numpy")
            titles[field] = escaped(name)
            if name in embedding and len(embedding) > 6:
                hidden.append(field)  # dozens of pixel columns would bury the labels
        for field, (name, found) in self._derived_fields().items():
            if not lazy:
                data[field] = found.values
            titles[field] = escaped(name)
        sortable: bool | dict[str, bool] = True
        tooltips: dict[str, str] = {}
        if lazy:  # sorting reads the sorted column whole: only numbers and labels
            sortable = {field: False for field in titles}
            sortable.update({field: True for field, name in self._shown_columns(table).items()
                             if table.sortable(name)})
            sortable.update({field: True for field in self._derived_fields()})  # in memory
            tooltips = {field: _UNSORTABLE for field, ok in sortable.items() if not ok}
        index = pd.RangeIndex(len(table), name="row")
        # A lazy table's frame is its index alone; its pages are read when sent (_Tabulator).
        frame = _RowIndex(index=index) if lazy else pd.DataFrame(data, index=index)
        formatters = {
            THUMB: {"type": "image", "height": f"{_TABLE_THUMB_PX}px",
                          "width": f"{_TABLE_THUMB_PX}px"}
        }
        with pn.io.hold():
            if lazy:
                read = partial(self._page_frame, table)
                typed = read(np.arange(min(1, len(table)))).iloc[:0]
                frame.column_dtypes = typed.dtypes
                self.tabulator._lazy = (typed, read, partial(self._lazy_order, table))
            self.tabulator.param.update(
                value=frame, titles=titles, hidden_columns=hidden, formatters=formatters,
                selection=[], sortable=sortable, header_tooltips=tooltips,
            )
            self._filter.rows = []
        self._fill_thumbnails()

    def _on_derived(self, *events: Any) -> None:
        """New values of a derived column (faithfulness): the same rows, that column replaced."""
        state, value = self.state, self.tabulator.value
        if state.table is None or value is None or state.table is not self._table_of:
            return  # a new table: _on_table lists its derived columns
        derived = self._derived_fields()
        titles = {key: title for key, title in self.tabulator.titles.items()
                  if not str(key).startswith("d")}
        titles.update({field: escaped(name) for field, (name, _) in derived.items()})
        lazy = self.tabulator._lazy
        # Panel clears a remote-paginated table's selection when its value changes; that
        # echo is not a person's click and must not clear the state's selection.
        with pn.io.hold():
            self._syncing = True
            try:
                if lazy is not None:
                    # The index-only frame stays; the page reader now adds the derived cells.
                    template = lazy[0][[c for c in lazy[0].columns
                                        if not str(c).startswith("d")]]
                    for field, (_, found) in derived.items():
                        template[field] = found.values[:0]
                    self.tabulator._lazy = (template, *lazy[1:])
                    self.tabulator.titles = titles
                    self.tabulator.param.trigger("value")
                else:
                    data = {name: value[name] for name in value.columns
                            if not str(name).startswith("d")}
                    data.update({field: found.values for field, (_, found) in derived.items()})
                    self.tabulator.param.update(value=pd.DataFrame(data, index=value.index),
                                                titles=titles)
            finally:
                self._syncing = False
            self._on_selection()  # the same rows stay highlighted

    def _on_hover_image(self, *events: Any) -> None:
        table = self.state.table
        if isinstance(table, DatasetTable) and table is self._table_of:
            column = self.state.hover_image
            if column is not None:
                self.tabulator.titles = {**self.tabulator.titles, THUMB: escaped(column)}
            self.tabulator._update_cds()  # the page again, with the new column's thumbnails
            return
        if table is None or self._thumbs is None or table is not self._table_of:
            return  # a new table: _on_table makes its own thumbnails
        self._thumbs[:] = False
        column = self.state.hover_image
        if column is not None:
            self.tabulator.titles = {**self.tabulator.titles, THUMB: escaped(column)}
        self._fill_thumbnails()

    def _fill_thumbnails(self, *events: Any) -> None:
        """Make the thumbnails of the rows on the visible page (and only those)."""
        table, value = self.state.table, self.tabulator.value
        if table is None or value is None or self._thumbs is None or table is not self._table_of:
            return
        view = self.tabulator.current_view
        if view is None:
            return
        start = (self.tabulator.page - 1) * self.tabulator.page_size
        rows = view.index[start:start + self.tabulator.page_size].to_numpy()
        rows = rows[~self._thumbs[rows]]
        if not len(rows):
            return
        patch = []
        column = self.state.hover_image or table.schema.of_kind("image")[0]
        images = table.get_column(column, convert_to="numpy")
        for row in rows:
            image = images[row]
            uri = image.thumbnail_uri(_TABLE_THUMB_PX) if image is not None else BLANK_IMAGE
            patch.append((int(row), uri))
        self._thumbs[rows] = True
        self.tabulator.patch({THUMB: patch})
