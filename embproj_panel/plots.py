"""Old home of the scatter's builders, kept so ``from embproj_panel import plots`` still works.

The code now lives with what it is about: colour mapping and the plot frame in
:mod:`embproj_panel.colors`, hit testing in :mod:`embproj_panel.spatial`, the HoloViews
builders in :mod:`embproj_panel.views.plots`. New code imports from those modules.
"""

from __future__ import annotations

from embproj_panel.colors import *  # noqa: F403 - re-exported for old imports
from embproj_panel.colors import __all__ as _colors
from embproj_panel.spatial import PointIndex
from embproj_panel.state import DATASHADE_THRESHOLD
from embproj_panel.views.plots import *  # noqa: F403 - re-exported for old imports
from embproj_panel.views.plots import __all__ as _plots

__all__ = [*_colors, *_plots, "DATASHADE_THRESHOLD", "PointIndex"]
