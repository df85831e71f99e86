"""ProjectorState driven through ``param``: defaults, recompute rules, stale results, selection."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from embproj_panel import compute, datasets
from embproj_panel.state import ProjectorState, settings_class
from embproj_panel.table import Table

# umap-learn warns on import that TensorFlow is missing (ParametricUMAP); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")


@pytest.fixture(scope="module")
def digits() -> Table:
    return datasets.digits()


@pytest.fixture
def calls(monkeypatch):
    """Every project_async call the state makes (method, params), still really computed."""
    made = []
    real = compute.project_async

    def spy(data, method="pca", columns=None, **kwargs):
        made.append((method, {k: v for k, v in kwargs.items() if k not in ("key", "scope")}))
        return real(data, method, columns, **kwargs)

    monkeypatch.setattr(compute, "project_async", spy)
    return made


def ready(state: ProjectorState) -> ProjectorState:
    state.wait(timeout=120)
    return state


# -- defaults -----------------------------------------------------------------------------------


def test_smart_defaults_on_digits(digits):
    state = ready(ProjectorState(table=digits))
    assert state.embedding_columns == [c for c in digits.columns if str(c).startswith("pixel_")]
    assert (state.color_by, state.hover_image, state.method) == ("target", "image", "pca")
    assert state.projection.coords.shape == (1797, 2)
    assert state.color.kind == "categorical" and len(state.color.color_key) == 10
    assert list(state.frame.columns) == ["x", "y", "row", "color"]
    assert not state.busy and state.progress == 1.0 and state.error == ""
    assert state.status.startswith("1,797 of 1,797 rows · PCA")
    # The constant pixel columns the engine dropped are named in the status line.
    assert "pixel_0_0" in state.status


def test_smart_defaults_on_hello_world():
    state = ready(ProjectorState(table=datasets.hello_world()))
    assert state.embedding_columns == ["D1", "D2", "D3", "D4", "D5"]
    assert state.color_by is None and state.hover_image is None
    assert state.frame.shape == (3, 3) and state.color.kind == "none"


def test_explicit_settings_win_over_defaults(digits):
    state = ready(ProjectorState(table=digits, color_by="pixel_3_3", hover_image=None,
                                 embedding_columns=["pixel_3_3", "pixel_3_4"]))
    assert state.color.kind == "numeric" and state.hover_image is None
    assert state.projection.columns == ["pixel_3_3", "pixel_3_4"]


def test_settings_classes_follow_the_engine_specs():
    umap = settings_class("umap")()
    assert umap.param.n_neighbors.bounds == (2, 200)
    assert umap.n_epochs is None and umap.reducer_params()["n_epochs"] == "auto"
    with pytest.raises(ValueError):
        umap.n_neighbors = 500
    umap.n_neighbors = 30
    assert umap.changed_params() == {"n_neighbors": 30}


# -- what recomputes ----------------------------------------------------------------------------


def test_pca_settings_recompute_at_once(digits, calls):
    state = ready(ProjectorState(table=digits))
    state.settings["pca"].param.update(x_component=2, y_component=3)
    ready(state)
    assert [c[1]["x_component"] for c in calls] == [1, 2]
    assert state.projection.params["x_component"] == 2


def test_umap_waits_for_compute_unless_auto(digits, calls):
    small = Table(dataframe=digits.get_dataframe().iloc[:60])
    state = ready(ProjectorState(table=small))
    state.method = "umap"
    state.settings["umap"].n_neighbors = 5
    assert len(calls) == 1 and state.stale and "press Compute" in state.status
    state.param.trigger("compute")
    ready(state)
    assert [c[0] for c in calls] == ["pca", "umap"] and not state.stale
    assert state.projection.method == "umap" and state.projection.params["n_neighbors"] == 5
    assert "seed 0" in state.status
    state.auto_compute = True
    state.settings["umap"].n_neighbors = 6
    ready(state)
    assert len(calls) == 3 and state.projection.params["n_neighbors"] == 6


def test_restyling_never_recomputes(digits, calls):
    state = ready(ProjectorState(table=digits))
    projection = state.projection
    state.param.update(point_size=12, alpha=0.3, colormap="plasma")
    state.color_by = "pixel_3_3"
    assert state.color.kind == "numeric" and state.frame["color"].dtype == np.float64
    state.color_by = None
    assert "color" not in state.frame
    assert len(calls) == 1 and state.projection is projection


class ManualJob:
    """A job the test finishes by hand, to order results as a slow server would."""

    def __init__(self, projection):
        self._projection = projection
        self._callbacks = []
        self._finished = threading.Event()
        self.cancelled = False
        self.progress = 0.0

    @property
    def done(self):
        return self._finished.is_set()

    def wait(self, timeout=None):
        return self._finished.wait(timeout)

    def add_done_callback(self, fn):
        self._callbacks.append(fn)

    def cancel(self, reason="Cancelled."):
        return False  # too late to cancel: the result arrives anyway

    def exception(self):
        return None

    def result(self):
        return self._projection

    def finish(self):
        self._finished.set()
        for fn in self._callbacks:
            fn(self)


def test_a_stale_result_never_overwrites_a_newer_one(digits, monkeypatch):
    first = compute.project(digits, "pca", x_component=1, y_component=2)
    second = compute.project(digits, "pca", x_component=2, y_component=3)
    jobs = [ManualJob(first), ManualJob(second)]
    queue = list(jobs)
    monkeypatch.setattr(compute, "project_async", lambda *a, **k: queue.pop(0))
    state = ProjectorState(table=digits)
    state.settings["pca"].x_component = 2
    jobs[1].finish()  # the newer request finishes first...
    assert state.projection is second
    jobs[0].finish()  # ...and the older one, arriving late, is dropped
    assert state.projection is second and not state.busy


def test_results_from_worker_threads_wait_for_the_owner(digits, monkeypatch):
    projection = compute.project(digits, "pca")
    job = ManualJob(projection)
    monkeypatch.setattr(compute, "project_async", lambda *a, **k: job)
    state = ProjectorState(table=digits)
    worker = threading.Thread(target=job.finish)
    worker.start()
    worker.join()
    # Outside a server or notebook, a worker thread never sets parameters itself...
    assert state.projection is None and state.busy
    state.wait()  # ...the owner applies the result when it asks for it.
    assert state.projection is projection and not state.busy


def test_errors_are_readable_and_keep_the_last_projection(digits):
    state = ready(ProjectorState(table=digits))
    projection = state.projection
    state.param.update(method="umap", auto_compute=True)
    state.settings["umap"].param.update(min_dist=0.9, spread=0.5)
    ready(state)
    assert state.error.startswith("UMAP failed:") and "min_dist" in state.error
    assert "Traceback" not in state.error
    assert state.projection is projection and not state.busy


def test_no_embedding_columns_is_an_error_not_a_crash(digits):
    state = ready(ProjectorState(table=digits))
    state.embedding_columns = []
    assert "at least one embedding column" in state.error and not state.busy


# -- tables -------------------------------------------------------------------------------------


def test_set_table_checks_columns_and_keeps_the_previous_table(digits):
    state = ready(ProjectorState(table=digits))
    with pytest.raises(ValueError, match="cannot be the colour column"):
        state.set_table(datasets.hello_world(), color_by="target")
    assert state.table is digits
    state.set_table(datasets.hello_world(), color_by="D1")
    ready(state)
    assert state.color.kind == "numeric" and len(state.frame) == 3


def test_new_table_clears_the_selection_and_old_projection(digits):
    state = ready(ProjectorState(table=digits))
    state.selection = [1, 2]
    state.table = datasets.hello_world()
    # the old layout is gone at once (a quick new one may already have landed)
    assert state.selection == [] and (state.projection is None
                                      or len(state.projection.rows) == 3)
    ready(state)
    assert len(state.projection.rows) == 3


# -- selection ----------------------------------------------------------------------------------


def test_select_normalises_and_validates(digits):
    state = ready(ProjectorState(table=digits))
    state.select(np.array([5, 3, 3], dtype=np.int32))
    assert state.selection == [3, 5] and all(type(r) is int for r in state.selection)
    with pytest.raises(ValueError, match="outside the table of 1,797 rows"):
        state.select([1797])
    with pytest.raises(TypeError, match="integers"):
        state.select([0.5])
    assert state.selection == [3, 5]


def test_selected_dataframe_has_the_projected_coordinates(digits):
    state = ready(ProjectorState(table=digits))
    state.select([10, 4])
    frame = state.selected_dataframe
    assert list(frame.index) == [4, 10] and list(frame.columns[:3]) == ["x", "y", "image"]
    rows = list(state.projection.rows)
    expected = state.projection.coords[[rows.index(4), rows.index(10)]]
    np.testing.assert_allclose(frame[["x", "y"]].to_numpy(), expected)


def test_positions_skip_rows_that_were_not_projected():
    frame = pd.DataFrame({"a": [0.0, np.nan, 1.0, 2.0], "b": [1.0, 1.0, 0.0, 3.0]})
    state = ready(ProjectorState(table=Table(dataframe=frame)))
    assert list(state.projection.rows) == [0, 2, 3]
    assert "1 row(s) excluded (row 1" in state.status
    np.testing.assert_array_equal(state.positions_of([1, 2, 3]), [1, 2])
    np.testing.assert_array_equal(state.rows_of([0, 2]), [0, 3])


def test_close_cancels_the_running_job(digits, monkeypatch):
    jobs = []
    real = compute.project_async

    def keep(*args, **kwargs):
        jobs.append(real(*args, **kwargs))
        return jobs[-1]

    monkeypatch.setattr(compute, "project_async", keep)
    state = ProjectorState(table=digits, method="umap")  # a new table projects at once
    (job,) = jobs
    assert not job.done  # UMAP of 1,797 rows takes far longer than this line
    state.close()
    with pytest.raises(compute.Cancelled):
        job.result(timeout=60)
    assert job.cancelled and state.closed
    state.wait()  # returns at once: nothing will be applied
    assert state.projection is None


def test_close_stops_applying_a_result_that_arrives_anyway(digits, monkeypatch):
    job = ManualJob(compute.project(digits, "pca"))  # too late to cancel: cancel() is False
    monkeypatch.setattr(compute, "project_async", lambda *a, **k: job)
    state = ProjectorState(table=digits)
    state.close()
    job.finish()  # on the owner's thread: a callback that is not dropped would apply it
    assert state.projection is None and state.frame is None
