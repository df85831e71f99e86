"""User text on its way to components that render HTML: escaped, or shortened to plain text.

Panel's HTML/Alert panes, Tabulator titles and MultiChoice labels read their text as HTML,
so every user string (column names, labels, file names, messages) passes :func:`escaped`
before it reaches one.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

__all__ = ["cell_text", "escaped"]


def escaped(text: Any) -> str:
    """``text`` as HTML that shows exactly these characters (never markup)."""
    return html.escape(str(text), quote=True)


def cell_text(value: Any) -> str:
    """A tooltip value as plain text (Bokeh escapes it again on display)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "(missing)"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, np.ndarray):
        return f"[{len(value)} values]"
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"
