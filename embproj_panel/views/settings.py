"""``SettingsView``: the gear's widgets over a :class:`ProjectorState`.

Embedding columns, colour, hover image and tooltip columns; the method, its settings (widgets
made from each :class:`~embproj_panel.state.MethodSettings`' parameter types and bounds) and
the Compute button (amber while the plot shows an older projection); the style. Widgets are
linked to the state's parameters with ``from_param``, except the embedding and tooltip
columns: Bokeh's MultiChoice (Choices.js) renders option labels as HTML, so they get escaped
labels and are linked by hand.

The embedding chooser stays compact for hundreds of columns: a count ("64 of 64 columns"), an
"All numeric" button and a searchable MultiChoice whose chips scroll inside a few lines.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param

from embproj_panel.reducers import REDUCERS
from embproj_panel.state import ProjectorState, column_labels
from embproj_panel.views.base import StateView
from embproj_panel.views.text import escaped

__all__ = ["SettingsView"]

# Choices.js draws one chip per chosen column: keep them to a few scrolling lines.
_SCROLLING_CHIPS = """
.choices__inner { max-height: 6.5em; overflow-y: auto; }
"""


class SettingsView(StateView):
    """Embedding, display, algorithm and style settings of ``state``."""


    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        self._layout = self._build()
        state = self.state
        state.param.watch(self._on_method, ["method"])
        state.param.watch(self._sync_tooltip_choice, ["table", "tooltip_columns", "derived"])
        state.param.watch(self._sync_embedding_choice, ["table", "embedding_columns"])
        state.param.watch(self._on_stale, ["stale"])
        self._sync_tooltip_choice()
        self._sync_embedding_choice()
        self._on_stale()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def _build(self) -> pn.Column:
        state = self.state
        p = state.param
        #: The embedding columns (escaped labels -> column names), searchable; its chips
        #: scroll inside a few lines however many columns are chosen.
        self.embedding_choice = pn.widgets.MultiChoice(
            label="Embedding columns", options={}, sizing_mode="stretch_width",
            placeholder="Type to find a column", search_option_limit=50,
            stylesheets=[_SCROLLING_CHIPS],
        )
        self.embedding_choice.param.watch(self._on_embedding_choice, "value")
        #: How many of the embeddable columns are chosen (plain text).
        self.embedding_count = pn.widgets.StaticText(value="", margin=(5, 10),
                                                     sizing_mode="stretch_width")
        #: Chooses every numeric (scalar) column at once.
        self.all_numeric = pn.widgets.Button(label="All numeric", color="light",
                                             width=110, margin=(0, 10))
        self.all_numeric.on_click(self._on_all_numeric)
        embedding = pn.Column(
            self.embedding_choice,
            pn.Row(self.embedding_count, self.all_numeric,
                   sizing_mode="stretch_width", margin=0),
            sizing_mode="stretch_width", margin=0,
        )
        color = pn.widgets.Select.from_param(p.color_by, label="Color by",
                                             sizing_mode="stretch_width")
        hover = pn.widgets.Select.from_param(p.hover_image, label="Hover image",
                                             sizing_mode="stretch_width")
        # Bokeh's MultiChoice (Choices.js) renders option labels as HTML, so it gets escaped
        # labels and is linked to the state by hand instead of through from_param.
        #: The tooltip columns (escaped labels -> column names).
        self.tooltip_choice = pn.widgets.MultiChoice(
            label="Tooltip columns", options={}, sizing_mode="stretch_width",
            placeholder="Columns shown on hover",
        )
        self.tooltip_choice.param.watch(self._on_tooltip_choice, "value")
        tooltip = self.tooltip_choice
        method = pn.widgets.RadioButtonGroup.from_param(
            p.method, options={cls.label: name for name, cls in REDUCERS.items()},
            sizing_mode="stretch_width", color="primary", variant="outline",
        )
        self._method_settings = {
            name: self._method_panel(settings) for name, settings in state.settings.items()
        }
        self._method_holder = pn.Column(self._method_settings[state.method],
                                        sizing_mode="stretch_width", margin=0)
        auto = pn.widgets.Checkbox.from_param(p.auto_compute, label="Recompute on every change")
        #: Runs the projection (amber while the settings changed since the one shown).
        self.compute_button = pn.widgets.Button.from_param(
            p.compute, label="Compute", color="primary", sizing_mode="stretch_width"
        )
        # Style sliders act on release too: a raster restyle re-aggregates.
        size = pn.widgets.FloatSlider.from_param(p.point_size, label="Point size",
                                                 sizing_mode="stretch_width", throttled=True)
        alpha = pn.widgets.FloatSlider.from_param(p.alpha, label="Opacity",
                                                  sizing_mode="stretch_width", throttled=True)
        colormap = pn.widgets.Select.from_param(p.colormap, label="Colormap (numeric colour)",
                                                sizing_mode="stretch_width")
        section = {"styles": {"font-weight": "600"}, "margin": (10, 10, 0, 10)}
        return pn.Column(
            pn.pane.HTML("Embedding", **section),
            embedding,
            pn.pane.HTML("Display", **section),
            color, hover, tooltip,
            pn.pane.HTML("Algorithm", **section),
            method,
            self._method_holder,
            auto,
            self.compute_button,
            pn.pane.HTML("Style", **section),
            size, alpha, colormap,
            sizing_mode="stretch_width",
        )

    @staticmethod
    def _method_panel(settings: param.Parameterized) -> pn.Param:
        """Widgets for one method's settings, from the parameters' types and bounds."""
        widgets: dict[str, Any] = {}
        for name, parameter in settings.param.objects("existing").items():
            if name == "name":
                continue
            label = name.replace("_", " ")
            if isinstance(parameter, param.Boolean):
                widgets[name] = {"type": pn.widgets.Checkbox, "label": label}
            elif isinstance(parameter, param.Selector):
                widgets[name] = {"type": pn.widgets.Select, "label": label}
            elif isinstance(parameter, param.Number):
                is_int = isinstance(parameter, param.Integer)
                low, high = parameter.bounds or (None, None)
                step = parameter.step or (1 if is_int else 0.1)
                few_steps = (
                    low is not None and high is not None and (high - low) / step <= 1000
                )
                if parameter.allow_None or not few_steps:
                    # None stands for "auto"/"never"/"draw a seed": an input box can be empty,
                    # a slider cannot.
                    kind = pn.widgets.IntInput if is_int else pn.widgets.FloatInput
                    widgets[name] = {"type": kind, "label": label, "placeholder": "auto"}
                else:
                    kind = pn.widgets.IntSlider if is_int else pn.widgets.FloatSlider
                    # Act on release: a drag must not start a projection per pixel.
                    widgets[name] = {"type": kind, "label": label, "throttled": True}
        return pn.Param(
            settings, parameters=list(widgets), widgets=widgets, show_name=False,
            sizing_mode="stretch_width", default_layout=pn.Column, margin=0,
        )

    # -- state -> widgets ---------------------------------------------------------------------
    def _sync_tooltip_choice(self, *events: Any) -> None:
        names = list(self.state.param.tooltip_columns.objects)
        options = {escaped(label): name for label, name in column_labels(names).items()}
        self.tooltip_choice.param.update(options=options,
                                         value=list(self.state.tooltip_columns))

    def _sync_embedding_choice(self, *events: Any) -> None:
        names = list(self.state.param.embedding_columns.objects)
        options = {escaped(label): name for label, name in column_labels(names).items()}
        chosen = list(self.state.embedding_columns)
        self.embedding_choice.param.update(options=options, value=chosen)
        self.embedding_count.value = f"{len(chosen):,} of {len(names):,} columns"
        self.all_numeric.disabled = not self._numeric_columns()

    def _numeric_columns(self) -> list[Any]:
        """Every scalar numeric column that can be an embedding column, in table order."""
        table = self.state.table
        if table is None:
            return []
        kinds = {name: info.kind for name, info in table.schema.columns.items()}
        return [name for name in self.state.param.embedding_columns.objects
                if kinds.get(name) == "numeric"]

    def _on_embedding_choice(self, event: Any) -> None:
        value = list(event.new)
        if value != list(self.state.embedding_columns):
            self.state.embedding_columns = value

    def _on_all_numeric(self, event: Any = None) -> None:
        numeric = self._numeric_columns()
        if numeric and numeric != list(self.state.embedding_columns):
            self.state.embedding_columns = numeric

    def _on_tooltip_choice(self, event: Any) -> None:
        value = list(event.new)
        if value != list(self.state.tooltip_columns):
            self.state.tooltip_columns = value

    def _on_method(self, *events: Any) -> None:
        self._method_holder.objects = [self._method_settings[self.state.method]]

    def _on_stale(self, *events: Any) -> None:
        self.compute_button.color = "warning" if self.state.stale else "primary"
