"""The app finds W&B tables: the source picker lists them, the URL names one, notes show.

The W&B files are written by the real ``wandb`` package (``tests/_wandb_files.py``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import requests

os.environ.setdefault("WANDB_MODE", "disabled")

import _wandb_files  # noqa: E402
from test_server import serve  # noqa: E402

from embproj_panel import wandb_io  # noqa: E402
from embproj_panel.app import ProjectorApp, source_options  # noqa: E402


@pytest.fixture(scope="session")
def wandb_files(tmp_path_factory):
    pytest.importorskip("wandb")
    return _wandb_files.make(tmp_path_factory.getbasetemp() / "wandb-files")


@pytest.fixture
def wandb_dir(wandb_files, monkeypatch):
    monkeypatch.setenv(wandb_io.WANDB_DIR_ENV, str(wandb_files))
    return wandb_files


def test_the_picker_lists_store_tables_then_wandb_tables(wandb_dir):
    options = source_options()
    wandb_labels = [label for label, source in options.items() if source and source[0] == "wandb"]
    assert len(wandb_labels) == 5
    assert list(options)[-5:] == wandb_labels  # after the sample and the store
    assert "W&B / artifact / digits (artifact)" in wandb_labels


def test_choosing_a_wandb_run_table_shows_what_was_lost(wandb_dir):
    app = ProjectorApp()
    label = next(label for label in app._options if "/ digits step 1 (run file)" in label)
    app._source.value = label
    state = app.state
    assert len(state.table) == 1797 and "image" not in state.table.columns
    assert app.wandb.endswith(":digits@1") and not app.table
    assert app._notes.visible and "&#x27;image&#x27; (Image) could not be recovered" in app._notes.object


def test_the_url_opens_a_wandb_table_by_its_listing_name(wandb_dir):
    url, apps = serve()
    assert requests.get(url + "?wandb=artifact:digits&color=target", timeout=120).status_code == 200
    state = apps[0].state
    assert len(state.table) == _wandb_files.ARTIFACT_ROWS and state.color_by == "target"
    assert state.table.column_types["image"] == "image"
    label = apps[0]._source.value
    assert label == "W&B / artifact / digits (artifact)"


@pytest.mark.parametrize("name", ["../artifact:digits", "/etc/passwd", "artifact/../..:digits",
                                  "artifact:digits@0"])
def test_a_url_name_that_is_not_listed_opens_nothing_from_disk(wandb_dir, name):
    url, apps = serve()
    assert requests.get(url, params={"wandb": name}, timeout=120).status_code == 200
    app = apps[0]
    assert len(app.state.table) == 1797  # the sample instead
    assert app._message.visible and "No W&amp;B table" in app._message.object


def test_without_a_wandb_folder_nothing_is_listed(tmp_path, monkeypatch):
    monkeypatch.delenv(wandb_io.WANDB_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert not any(source and source[0] == "wandb" for source in source_options().values())
    np.testing.assert_equal(len(source_options()), 1)  # just the sample
