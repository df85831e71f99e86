"""The projector app: ``panel serve apps/projector.py`` (add ``--show`` to open a browser).

Thin on purpose: everything lives in :mod:`embproj_panel.app`, which builds one page per
browser session.
"""

from __future__ import annotations

import panel as pn

from embproj_panel.app import create_app

pn.extension("tabulator", "filedropper", sizing_mode="stretch_width", notifications=False)

create_app().servable()
