"""Shared pytest fixtures: an isolated run store, a warm numba cache, clean Panel state."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # lets the suite run from a checkout without installing
    sys.path.insert(0, str(ROOT))

# numba compiles umap-learn/pynndescent on first use (20-60 s here). A persistent cache makes
# every later test session start warm; the directory must exist before umap is imported.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "embproj-panel" / "numba"))
Path(os.environ["NUMBA_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Every test gets its own empty run store (and projection cache) under tmp_path."""
    monkeypatch.setenv("EMBPROJ_DIR", str(tmp_path / "embproj-runs"))
    monkeypatch.delenv("EMBPROJ_CACHE_DIR", raising=False)  # the cache follows the store
    yield tmp_path / "embproj-runs"


@pytest.fixture(autouse=True)
def reset_projections():
    """Start every test with an empty in-memory projection cache and no keyed jobs.

    Both are process-wide (shared by a server's sessions, on purpose): without the reset a
    test could pass on a layout another test computed, or see another test's job superseded.
    """
    from embproj_panel import compute

    compute.projection_cache().clear()
    compute.reset_jobs()
    yield
    compute.reset_jobs()


@pytest.fixture(scope="session")
def numba_warm():
    """Compile umap-learn's numba code once per test session, not once per test."""
    import embproj_panel as ep

    return ep.warm_up(background=False).result()


@pytest.fixture(autouse=True)
def reset_panel_state():
    """Panel keeps per-process caches and session state; start every test from a clean slate."""
    yield
    if "panel" in sys.modules:
        import panel as pn
        from bokeh.io import reset_output

        pn.state.kill_all_servers()
        pn.state.reset()
        # A test that built a page in-process leaves its document current for this thread;
        # the next test's updates would then be scheduled on it and never run.
        pn.state.curdoc = None
        # Panel's run_app (panel/io/handlers.py) makes a served session's document Bokeh's
        # process-wide current document when Bokeh had none, and never puts it back; Panel's
        # state.curdoc falls back to it (it has a session context), so a later notebook-style
        # page found its updates scheduled on a dead server's document: the order-dependent
        # failures of test_notebook_api and test_resources after test_app_wandb.
        reset_output()


@pytest.fixture
def location(monkeypatch):
    """``location("?k=25")``: a served session's URL, as Panel's ``Location`` of the page being
    built (``pn.state.location`` returns it)."""
    import panel as pn
    from panel.io.location import Location

    def at(search: str) -> Location:
        here = Location(search=search)
        monkeypatch.setattr(type(pn.state), "location", property(lambda self: here))
        return here

    return at
