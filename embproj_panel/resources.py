"""What the browser loads: everything from the installed packages, nothing from a CDN.

Our users' data often lives on machines without internet, and by default Panel fetches its
own and Bokeh's JavaScript in a notebook from cdn.holoviz.org / cdn.bokeh.org (the output is
then blank, and the only sign is in the browser console). This module is the one place that
configures the projector's resources:

- :func:`extension` is ``pn.extension`` with the projector's extensions and
  ``inline=True``: in a notebook the JavaScript and CSS are sent with the output, from the
  installed Panel and Bokeh (JupyterLab, Notebook 7, VS Code and Colab alike). Under
  ``panel serve`` Bokeh and Panel already serve their files from the server itself
  (``inline`` only affects notebooks). The comms setting is Panel's own: ``PANEL_COMMS``,
  VS Code (``VSCODE_PID``/``VSCODE_CWD``) and Colab (``google.colab`` imported) are
  detected by ``pn.extension`` as without this module.
- :class:`HTML` and :class:`Alert` are Panel's panes with one fix for notebooks. Panel 1.9
  inlines its CDN stylesheets (``css/loading.css`` and the design's ``theme/default.css``,
  ``theme/native.css``) when an output is first rendered, but a pane whose text changes
  later (``HTMLBasePane._update`` re-sends the whole property set) goes out with the CDN
  links again; offline they fail, and the loading spinner loses its style. These panes
  inline them again on every update, as Panel does on the first render.
- :func:`extension` also makes Panel's notebook outputs deliver their updates in order and
  only once the page has rendered them (:mod:`embproj_panel._notebook_comm`): an early result
  otherwise left the figure greyed out by Panel's loading classes.
- :class:`Fast` is Panel's Fast design without its Google font (the page falls back to the
  system sans-serif instead of asking fonts.googleapis.com): the app's template uses it.

Why a function the user calls rather than a setting applied when a ``Projector`` is first
shown: the resources are chosen when ``pn.extension`` publishes Panel's loader, which is
before any output exists; a Projector's first render is too late to stop the loader from
asking the CDN.
"""

from __future__ import annotations

from typing import Any

import panel as pn
from panel.io.notebook import patch_inline_stylesheets
from panel.io.state import state
from panel.theme import Fast as _PanelFast

from embproj_panel import _bokeh_models, _notebook_comm

__all__ = ["Alert", "EXTENSIONS", "Fast", "HTML", "extension"]

#: The Panel extensions the projector's components need.
EXTENSIONS = ("tabulator",)


def extension(*extensions: str, **params: Any) -> None:
    """Load Panel for the projector with every browser resource from the installed packages.

    Call it once, where you would call ``pn.extension`` (first in a notebook, at the top of
    a ``panel serve`` script). It also starts :func:`embproj_panel.compute.warm_up` in the
    background.

    Parameters
    ----------
    *extensions
        More Panel extensions to load (``"filedropper"``, ...), beside the projector's own.
    **params
        Passed to ``pn.extension`` (``sizing_mode=...``, ``comms=...``); ``inline``
        defaults to True.
    """
    params.setdefault("inline", True)
    pn.extension(*dict.fromkeys([*EXTENSIONS, *extensions]), **params)
    # Notebook outputs get their updates in order, once the page can apply them.
    _notebook_comm.install()
    # Documents walk their models only when the model graph may have changed.
    _bokeh_models.install()
    # The first cell of a notebook: load umap-learn and the UMAP kernels from numba's disk
    # cache (or compile them) in the background while the user builds a table, so the
    # first UMAP does not pay for it (issue 15). Once per process, at a lower priority.
    from embproj_panel import compute

    compute.warm_up(background=True)


class _InlineOnUpdate:
    """Re-inlines Panel's CDN stylesheets after every update shown through a notebook comm."""

    def _update(self, ref: str, model: Any) -> None:
        # Overrides HTMLBasePane._update, a *private* method of Panel 1.9 (pane/markup.py),
        # which re-sends the model's stylesheets as CDN links; patch_inline_stylesheets is
        # the function Panel itself applies on the first render (panel/io/notebook.py).
        # Served, there is no comm and Panel's server rewrites the links to its own files.
        super()._update(ref, model)  # type: ignore[misc]
        view = state._views.get(ref)
        if view is not None and view[3] is not None and pn.config.inline:
            patch_inline_stylesheets(model)


class HTML(_InlineOnUpdate, pn.pane.HTML):
    """``pn.pane.HTML`` whose updates load nothing from a CDN in notebooks."""


class Alert(_InlineOnUpdate, pn.pane.Alert):
    """``pn.pane.Alert`` whose updates load nothing from a CDN in notebooks."""


class Fast(_PanelFast):
    """Panel's Fast design without its Google font (the system sans-serif is used).

    Named ``Fast`` on purpose: Panel finds a design's bundled files by its class name.
    """

    _resources = {**_PanelFast._resources, "font": {}}

