"""Faithfulness in the projector: the background state (values, supersession, k), the colour,
the table and export columns, the status line, and ``projector.faithfulness`` / ``wait()``."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import panel as pn
import pytest
from bokeh.models import LinearColorMapper

import embproj_panel as ep
from embproj_panel import compute, trust_state
from embproj_panel.colors import LOW_STANDS_OUT
from embproj_panel.export import to_csv_bytes
from embproj_panel.neighbors import clear_cache
from embproj_panel.state import ProjectorState
from embproj_panel.table import Table
from embproj_panel.trust import Assessment
from embproj_panel.trust_state import FaithfulnessState, summary_line
from embproj_panel.views import Projector

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")


@pytest.fixture(autouse=True)
def _fresh_index_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(scope="module")
def digits():
    return ep.datasets.digits()


def _blob_table(n: int = 400, bad_rows: tuple[int, ...] = (), extra: dict | None = None):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[: n // 2] += 4.0
    X[list(bad_rows)] = np.nan
    other = rng.normal(size=(n, 4))
    columns = {"v": list(X), "label": [str(i % 3) for i in range(n)],
               **{f"n{j}": other[:, j] for j in range(4)}, **(extra or {})}
    return Table(columns=list(columns), data=list(zip(*columns.values())))


# -- the state ----------------------------------------------------------------------------------


def test_values_equal_ep_faithfulness_on_the_same_projection_nan_where_not_projected():
    table = _blob_table(bad_rows=(5, 17))
    state = ProjectorState(table=table)
    faith = FaithfulnessState(state)
    state.wait()
    faith.wait()
    projection = state.projection
    expected = ep.faithfulness(table, projection, k=10)
    assert faith.values.shape == (len(table),)
    np.testing.assert_array_equal(faith.values[projection.rows], expected)
    assert np.isnan(faith.values[[5, 17]]).all()
    assert faith.assessment.k == 10 and faith.column == "faithfulness"
    np.testing.assert_array_equal(state.derived["faithfulness"].values, faith.values)


def test_a_result_for_an_older_layout_is_dropped(monkeypatch):
    table = _blob_table()
    real = trust_state.assess
    release, first_started = threading.Event(), threading.Event()
    layouts = []

    def slow_first(*args, **kwargs):
        layouts.append(args[1])
        if len(layouts) == 1:
            first_started.set()
            release.wait(30)
            # Ignore the cancel request and finish with a result, as a job that could not
            # be stopped in time does: the slot must still refuse it.
            return real(*args[:8], lambda: False)
        return real(*args, **kwargs)

    monkeypatch.setattr(trust_state, "assess", slow_first)
    state = ProjectorState(table=table)
    faith = FaithfulnessState(state)
    state.wait()
    old_job, old_layout = faith._slot.job, state.projection
    assert first_started.wait(30)
    state.embedding_columns = ["n0", "n1", "n2", "n3"]  # another layout
    state.wait()
    new_layout = state.projection
    faith.wait()
    expected = ep.faithfulness(table, new_layout, k=10)
    assert not np.array_equal(expected, ep.faithfulness(table, old_layout, k=10))
    np.testing.assert_array_equal(faith.values[new_layout.rows], expected)
    release.set()
    old_job.result(60)  # it finished with a result for the old layout...
    faith._finish(old_job)  # ...which the session delivers late
    np.testing.assert_array_equal(faith.values[new_layout.rows], expected)
    np.testing.assert_array_equal(state.derived["faithfulness"].values, faith.values)


def test_while_a_new_layout_is_assessed_the_column_holds_no_old_values(monkeypatch):
    table = _blob_table()
    state = ProjectorState(table=table)
    faith = FaithfulnessState(state)
    state.wait()
    faith.wait()
    gate = threading.Event()
    real = trust_state.assess
    monkeypatch.setattr(trust_state, "assess",
                        lambda *a, **kw: (gate.wait(30), real(*a, **kw))[1])
    faith.k = 5  # a new request: the values shown belong to k=10, and go
    assert faith.busy and faith.values is None
    assert np.isnan(state.derived["faithfulness"].values).all()
    assert faith.status.startswith("faithfulness (k=5): computing")
    gate.set()
    faith.wait()
    assert faith.assessment.k == 5 and not faith.busy
    np.testing.assert_array_equal(faith.values[state.projection.rows],
                                  ep.faithfulness(table, state.projection, k=5))


def _assess_blocking_until_cancelled(monkeypatch, which=lambda layout: True):
    """Make trust_state.assess wait for its cancel flag, once, on the first layout ``which``
    picks; the events say when that job started and when it saw the flag."""
    real = trust_state.assess
    started, cancel_seen = threading.Event(), threading.Event()
    assessed = []

    def blocking(*args):
        assessed.append(args[1])
        if not which(args[1]) or started.is_set():
            return real(*args)
        started.set()
        cancel = args[8]
        deadline = time.monotonic() + 60
        while not cancel() and time.monotonic() < deadline:
            time.sleep(0.01)
        if cancel():
            cancel_seen.set()
        raise compute.Cancelled("stopped")

    monkeypatch.setattr(trust_state, "assess", blocking)
    return started, cancel_seen, assessed


def test_a_new_projection_request_cancels_the_running_assessment_at_once(monkeypatch):
    table = _blob_table()
    state = ProjectorState(table=table)
    faith = FaithfulnessState(state)
    state.wait()
    faith.wait()  # the first layout's values are shown...
    old_layout = state.projection
    started, cancel_seen, assessed = _assess_blocking_until_cancelled(monkeypatch)
    faith.k = 5  # ...then reassessed, slowly
    assert started.wait(30)
    job = faith._slot.job
    state.embedding_columns = ["n0", "n1", "n2", "n3"]  # a new projection is asked for
    # The old layout's job stops now, while the new projection computes (nothing here
    # applies that projection before state.wait()).
    assert cancel_seen.wait(30)
    with pytest.raises(compute.Cancelled):
        job.result(30)
    assert state.projection is old_layout and faith._slot.job is None
    assert not faith.busy and "waits for the new layout" in faith.status
    assert faith.values is None and np.isnan(state.derived["faithfulness"].values).all()
    state.wait()
    faith.wait()
    new_layout = state.projection
    assert [a is new_layout for a in assessed] == [False, True]  # no restart on the old one
    np.testing.assert_array_equal(faith.values[new_layout.rows],
                                  ep.faithfulness(table, new_layout, k=5))
    np.testing.assert_array_equal(state.derived["faithfulness"].values, faith.values)


def test_when_the_new_projection_fails_the_shown_layout_is_assessed_again(monkeypatch):
    state = ProjectorState(table=_blob_table())
    started, cancel_seen, assessed = _assess_blocking_until_cancelled(monkeypatch)
    faith = FaithfulnessState(state)
    state.wait()
    shown = state.projection
    assert started.wait(30)

    def fails(*args, **kwargs):
        return slot.submit_work(
            lambda progress, cancel: (_ for _ in ()).throw(ValueError("no")), "pca")

    slot = state._slot
    monkeypatch.setattr(slot, "submit", fails)
    state.embedding_columns = ["n0", "n1", "n2", "n3"]
    assert cancel_seen.wait(30)
    state.wait()
    assert "failed" in state.error and state.projection is shown
    faith.wait()
    assert [a is shown for a in assessed] == [True, True] and faith.assessment is not None
    np.testing.assert_array_equal(faith.values[shown.rows],
                                  ep.faithfulness(state.table, shown, k=10))


def test_a_table_column_called_faithfulness_is_left_alone():
    table = _blob_table(extra={"faithfulness": ["mine"] * 400})
    state = ProjectorState(table=table)
    faith = FaithfulnessState(state)
    state.wait()
    faith.wait()
    assert faith.column == "faithfulness_" and "faithfulness_" in state.derived
    assert table.get_column("faithfulness")[0] == "mine"
    assert "faithfulness_" not in table.columns  # never written into the user's table


def test_a_new_table_clears_the_derived_column():
    state = ProjectorState(table=_blob_table())
    faith = FaithfulnessState(state)
    state.wait()
    faith.wait()
    state.color_by = "faithfulness"
    state.set_table(_blob_table(n=300))
    assert state.derived == {} and state.color_by != "faithfulness"
    assert faith.values is None and faith.column == ""
    state.wait()
    faith.wait()
    assert faith.values.shape == (300,)


def test_job_slot_submit_work_supersedes_the_previous_job():
    slot = compute.JobSlot("work")
    gate = threading.Event()

    def blocked(progress, cancel):
        while not cancel():
            gate.wait(0.01)
        raise compute.Cancelled("stopped")

    first = slot.submit_work(blocked, "first")
    second = slot.submit_work(lambda progress, cancel: (progress(0.5), 42)[1], "second")
    assert second.result(30) == 42 and slot.is_current(second)
    with pytest.raises(compute.Cancelled):
        first.result(30)
    assert first.cancelled and not slot.is_current(first)


# -- the summary line ---------------------------------------------------------------------------


def _assessment(**changes):
    values = dict(values=np.full(10_000, 0.71), rows=np.arange(10_000), mean=0.7132,
                  trustworthiness=0.934, trust_stderr=0.004, sample=3_000, k=10,
                  metric="euclidean", exact=True, notes=[])
    values.update(changes)
    return Assessment(**values)


def test_summary_states_mean_trustworthiness_k_and_sample():
    assert summary_line(_assessment()) == (
        "faithfulness mean 0.71 · trustworthiness 0.93 (k=10, 3,000-row sample, ± 0.00)")
    assert summary_line(_assessment(sample=10_000)) == (
        "faithfulness mean 0.71 · trustworthiness 0.93 (k=10, all 10,000 rows)")
    line = summary_line(_assessment(trustworthiness=None, exact=False,
                                    notes=["k=300 is outside 1-100; using k=100."]))
    assert "trustworthiness not computed" in line and "approximate index" in line
    assert line.endswith("k=300 is outside 1-100; using k=100.")


# -- the projector ------------------------------------------------------------------------------


@pytest.fixture
def projector(digits):
    p = Projector(digits, method="pca", color_by="target")
    yield p
    p.trust.close()
    p.state.close()


def test_wait_waits_for_faithfulness_and_the_python_property(projector, digits):
    projector.state.wait()  # the projection only: its faithfulness is not applied yet
    assert projector.faithfulness is None
    assert "faithfulness" not in projector.state.param.color_by.objects.values()
    assert projector.wait() is projector
    values = projector.faithfulness
    projection = projector.state.projection
    np.testing.assert_array_equal(values[projection.rows],
                                  ep.faithfulness(digits, projection, k=10))
    values[:] = -1  # a copy: the shown values stay
    assert np.nanmin(projector.faithfulness) >= 0
    with pytest.raises(AttributeError):
        projector.faithfulness = values


def test_status_line_shows_mean_and_trustworthiness(projector):
    projector.wait()
    text = projector.trust.line.object
    assert re.fullmatch(r"faithfulness mean 0\.\d\d · trustworthiness 0\.\d\d "
                        r"\(k=10, all 1,797 rows\)", text), text
    assert projector.trust in projector.parts.values()
    projector.trust.k_input.value = 4
    projector.wait()
    assert "(k=4, all 1,797 rows)" in projector.trust.line.object


def test_colour_option_appears_once_computed_with_a_fixed_scale(projector):
    projector.wait()
    options = projector.settings._layout.select(pn.widgets.Select)[0].options
    assert "faithfulness" in options.values()
    projector.color_by = "faithfulness"
    color = projector.state.color
    assert color.kind == "numeric" and color.span == (0.0, 1.0)
    assert color.colormap == LOW_STANDS_OUT and LOW_STANDS_OUT[0] == "#a50026"
    root = pn.panel(projector.scatter).get_root()
    mappers = [m for m in root.select({"type": LinearColorMapper}) if m.low == 0 and m.high == 1]
    assert mappers and mappers[0].palette[0] == "#a50026"
    assert len(set(mappers[0].palette)) > 100  # a smooth ramp, not five steps


def test_table_and_export_have_a_faithfulness_column(projector):
    projector.wait()
    tabulator = projector.table.tabulator
    field = next(key for key, title in tabulator.titles.items() if title == "faithfulness")
    np.testing.assert_array_equal(tabulator.value[field].to_numpy(), projector.faithfulness)
    projector.downloads.rows.value = "all"
    frame = projector.downloads.frame()
    np.testing.assert_array_equal(frame["faithfulness"].to_numpy(), projector.faithfulness)
    header = to_csv_bytes(frame).split(b"\n", 1)[0]
    assert header.endswith(b",faithfulness")
    projector.selection = [3, 1]
    selected = projector.selected_dataframe
    assert selected["faithfulness"].tolist() == projector.faithfulness[[1, 3]].tolist()


def test_a_new_projection_refreshes_the_table_column(projector):
    projector.wait()
    before = projector.faithfulness
    projector.state.embedding_columns = projector.state.embedding_columns[:20]
    projector.wait()
    after = projector.faithfulness
    assert not np.array_equal(before, after)
    tabulator = projector.table.tabulator
    field = next(key for key, title in tabulator.titles.items() if title == "faithfulness")
    np.testing.assert_array_equal(tabulator.value[field].to_numpy(), after)


def test_a_raster_shades_faithfulness_on_the_fixed_scale():
    import dataclasses

    from embproj_panel.colors import color_mapping, plot_frame
    from embproj_panel.views import plots

    coords = np.array([[0.0, 0.0], [1.0, 1.0]])
    plain = color_mapping([0.0, 0.0], "faithfulness", kind="numeric")
    fixed = dataclasses.replace(plain, span=(0.0, 1.0), colormap=LOW_STANDS_OUT)

    def pixel(color):
        frame = plot_frame(coords, np.arange(2), color)
        rgba = plots.shade(frame, color, x_range=(-0.5, 1.5), y_range=(-0.5, 1.5), width=4,
                           height=4, colormap="viridis", spread=0)
        return tuple(rgba[rgba[..., 3] > 0][0, :3])

    assert pixel(fixed) == (0xa5, 0x00, 0x26)   # 0 is the low end of the fixed ramp
    assert pixel(plain) != (0xa5, 0x00, 0x26)   # the column's own span and the user's cmap
    assert plots.colorbar_overlay(fixed).opts.get().kwargs["clim"] == (0.0, 1.0)


def test_new_faithfulness_values_keep_the_selection(projector):
    # The table's value is replaced when new values land; Panel then clears a paged table's
    # selection, which must not reach the state as if the user had cleared it.
    projector.wait()
    projector.selection = [3, 5, 8]
    projector.state.embedding_columns = projector.state.embedding_columns[:20]
    projector.wait()
    assert projector.selection == [3, 5, 8]
    assert sorted(projector.table.tabulator.selection) == [3, 5, 8]
