"""The projector app: ``panel serve apps/projector.py`` (add ``--show`` to open a browser).

Thin on purpose: everything lives in :mod:`embproj_panel.app`, which builds one page per
browser session.
"""

from __future__ import annotations

from embproj_panel import resources
from embproj_panel.app import create_app

# pn.extension with every browser resource from the installed packages (no CDN).
resources.extension("filedropper", sizing_mode="stretch_width", notifications=False)

create_app().servable()
