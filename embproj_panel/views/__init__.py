"""The projector's views: one small ``pn.viewable.Viewer`` per concern over one state.

Each view is a :class:`~embproj_panel.views.base.StateView`, holding ``state =
param.ClassSelector(class_=ProjectorState)`` (Panel's DataStore -> View pattern); it builds
its components once and afterwards only updates their properties, and works alone in a
notebook (``ep.views.ScatterView(state)``):

================  ==========================================================================
SettingsView      embedding columns, colour, hover image, tooltip columns, method, style
StatusView        the status line, the progress bar and the error alert
TrustView         the faithfulness line (mean, trustworthiness, its k), computed in the background
ScatterView       the linked scatter (glyphs or a Datashader raster), hover, plot selection;
                  other views draw on it through ``ScatterView.overlays``
TableView         the paged table of rows, linked to the selection, with thumbnails
DownloadsView     CSV / Parquet downloads of the selection or every row
Projector         composes the parts listed in :data:`PARTS` (a new view is one line there)
Compare           2-4 projections side by side (one ComparePanel each), one selection
================  ==========================================================================

Submodules load on first use (PEP 562), so ``import embproj_panel.views.plots`` (the pure
HoloViews builders) does not import Panel.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Compare": "embproj_panel.views.compare",
    "ComparePanel": "embproj_panel.views.compare",
    "DownloadsView": "embproj_panel.views.downloads",
    "IsolateView": "embproj_panel.views.isolate",
    "MAX_DOWNLOAD_BYTES": "embproj_panel.views.downloads",
    "MAX_RASTER_PIXELS": "embproj_panel.views.plots",
    "NeighborsView": "embproj_panel.views.neighbors",
    "PARTS": "embproj_panel.views.projector",
    "Projector": "embproj_panel.views.projector",
    "ScatterView": "embproj_panel.views.scatter",
    "SearchView": "embproj_panel.views.search",
    "SettingsView": "embproj_panel.views.settings",
    "StateView": "embproj_panel.views.base",
    "StatusView": "embproj_panel.views.status",
    "TableView": "embproj_panel.views.table",
    "TrustView": "embproj_panel.views.trust",
    "as_table": "embproj_panel.sources",
    "session_dispatch": "embproj_panel.views.session",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'embproj_panel.views' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
