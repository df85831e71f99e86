"""``embproj serve <W&B artifact folder>`` in a real browser: the digits, their images on hover.

The artifact folder is written by the real ``wandb`` package (``tests/_wandb_files.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_browser import densest_point, open_app, to_screen, tooltip

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the helpers below
import _wandb_files  # noqa: E402
from test_cli import serving, stop, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def served_wandb(tmp_path_factory):
    pytest.importorskip("wandb")
    files = _wandb_files.make(tmp_path_factory.getbasetemp() / "wandb-files")
    process, url = serving(files / "artifact")
    try:
        wait_for(url, process)
        yield url
    finally:
        stop(process)


def test_embproj_serve_draws_the_wandb_digits_with_their_images(served_wandb, page, screenshot):
    state = open_app(page, served_wandb)
    assert state["sources"][0]["n"] == _wandb_files.ARTIFACT_ROWS
    rows = f"{_wandb_files.ARTIFACT_ROWS:,} of {_wandb_files.ARTIFACT_ROWS:,} rows"
    assert page.get_by_text(rows).count() >= 1
    x, y = densest_point(state)
    sx, sy = to_screen(page, x, y)
    for dx in (0, 1, -1, 2):
        page.mouse.move(sx + dx, sy + dx)
        page.wait_for_timeout(300)
    tooltip(page).first.wait_for(state="visible", timeout=15_000)
    img = tooltip(page).first.locator("img").first
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    screenshot("wandb-digits")
    assert not page.js_errors, page.js_errors
