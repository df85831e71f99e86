"""``python -m embproj_panel``: the ``embproj`` command (see :mod:`embproj_panel.cli`)."""

from __future__ import annotations

import sys

from embproj_panel.cli import main

if __name__ == "__main__":
    sys.exit(main())
