"""The ``embproj`` command, driven as a user drives it: ``python -m embproj_panel ...`` in a
subprocess (the ``embproj`` console script only exists after a reinstall; that it is declared
is tested on its own).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import _wandb_files
import numpy as np
import pandas as pd
import pytest

import embproj_panel as ep
from embproj_panel import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def wandb_files(tmp_path_factory) -> Path:
    pytest.importorskip("wandb")
    return _wandb_files.make(tmp_path_factory.getbasetemp() / "wandb-files")


def embproj(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "embproj_panel", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


def one_error_line(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The run failed with ``code`` and said why in one line, without a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def csv_file(tmp_path) -> Path:
    path = tmp_path / "points.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"id": [f"r{i}" for i in range(120)], "a": rng.standard_normal(120),
                  "b": rng.standard_normal(120), "c": rng.standard_normal(120),
                  "label": ["x", "y", "z"] * 40}).to_csv(path, index=False)
    return path


@pytest.fixture
def npy_file(tmp_path) -> Path:
    path = tmp_path / "vectors.npy"
    np.save(path, np.random.default_rng(1).standard_normal((150, 8)).astype(np.float32))
    return path


# -- the entry point and --help ---------------------------------------------------------------


def test_the_console_script_is_declared_and_resolves_to_main():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"embproj": "embproj_panel.cli:main"}
    module, _, name = scripts["embproj"].partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is cli.main


@pytest.mark.parametrize("command", [[], ["serve"], ["project"], ["ls"], ["log"]])
def test_help_of_every_command(command):
    result = embproj(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: embproj {' '.join(command)}".rstrip())
    for word in {"": ["serve", "project", "ls", "log"], "serve": ["--port", "--address", "--show",
                 "--allow-websocket-origin", "--wandb-dir"], "project": ["--method", "--columns",
                 "--param", "-o"], "ls": ["--dir"], "log": ["--project", "--name", "--key"]}[
                     " ".join(command)]:
        assert word in result.stdout


def test_no_command_is_a_usage_error():
    one_error_line(embproj(), 2, "embproj: error:", "COMMAND", "--help")


# -- embproj project ----------------------------------------------------------------------------


def test_project_writes_row_ids_and_coordinates_through_the_shared_cache(csv_file, tmp_path,
                                                                          isolated_store):
    out = tmp_path / "coords.parquet"
    result = embproj("project", csv_file, "--method", "pca", "--columns", "a", "b", "c",
                     "-o", out)
    assert result.returncode == 0, result.stderr
    assert "Wrote 120 rows (row, id, x, y)" in result.stdout
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["row", "id", "x", "y"]
    assert frame["row"].tolist() == list(range(120))
    assert frame["id"].tolist() == [f"r{i}" for i in range(120)]
    # the same numbers as the library, from the same on-disk cache (same $EMBPROJ_DIR)
    table = cli.read_source(str(csv_file)).table
    projection = ep.project(table, "pca", columns=["a", "b", "c"])
    assert projection.cached
    np.testing.assert_array_equal(frame[["x", "y"]].to_numpy(np.float32), projection.coords)
    again = embproj("project", csv_file, "--method", "pca", "--columns", "a", "b", "c",
                    "-o", out)
    assert "(from the cache)" in again.stdout


def test_project_umap_with_params_reports_progress_in_plain_lines(npy_file, tmp_path,
                                                                   numba_warm):
    out = tmp_path / "coords.csv"
    result = embproj("project", npy_file, "--method", "umap", "--param", "n_neighbors=10",
                     "--param", "random_state=3", "-o", out)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "umap: 0%" and lines[-1] == "umap: 100%"
    assert "\r" not in result.stderr  # no bar when stderr is not a terminal
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["row", "x", "y"] and len(frame) == 150
    expected = ep.project(np.load(npy_file), "umap", n_neighbors=10, random_state=3)
    np.testing.assert_allclose(frame[["x", "y"]].to_numpy(), expected.coords, rtol=1e-5)


def test_progress_is_a_bar_on_a_terminal():
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = cli.Progress("umap", stream, width=10)
    for fraction in (0.0, 0.5, 0.5, 1.0):
        progress(fraction)
    progress.close()
    assert stream.getvalue() == ("\rumap [----------]   0%\rumap [#####-----]  50%"
                                 "\rumap [##########] 100%\n")


def test_project_on_a_wandb_folder_needs_the_key_when_it_holds_several(wandb_files, tmp_path):
    out = tmp_path / "c.parquet"
    one_error_line(embproj("project", wandb_files / "wandb", "--method", "pca", "-o", out), 1,
                   "holds 3 tables", "'big', 'digits', 'embeddings'")
    result = embproj("project", wandb_files / "wandb", "--key", "embeddings", "--step", "0",
                     "--method", "pca", "-o", out)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_parquet(out)) == 3


@pytest.mark.parametrize("args, code, fragments", [
    (["{missing}", "--method", "pca"], 1, ["no such file or folder"]),
    (["{csv}", "--method", "pca", "--columns", "zz"], 1, ["no column 'zz'", "id, a, b, c, label"]),
    (["{csv}", "--method", "umap", "--param", "foo=1"], 1, ["umap has no such parameter",
                                                            "n_neighbors"]),
    (["{csv}", "--method", "umap", "--param", "n_neighbors"], 1, ["write NAME=VALUE"]),
    (["{csv}", "--method", "umap", "--param", "n_neighbors=abc"], 1, ["not a valid int"]),
    (["{csv}", "--method", "umap", "--param", "n_neighbors=1"], 1, ["between 2 and 200"]),
    (["{csv}", "--method", "bogus"], 2, ["invalid choice: 'bogus'", "--help"]),
    (["{csv}"], 2, ["--method"]),
    (["{csv}", "--method", "pca", "--output", "{tmp}/nowhere/c.parquet"], 1, ["does not exist"]),
    (["{csv}", "--method", "pca", "--output", "{tmp}/c.xlsx"], 1, [".parquet or .csv"]),
    (["{corrupt}", "--method", "pca"], 1, ["not a Parquet file"]),
    (["{ragged}", "--method", "pca"], 1, ["ragged.csv", "line"]),
    (["{text}", "--method", "pca"], 1, ["notes.txt: not a file embproj reads", ".npz"]),
    (["{empty}", "--method", "pca"], 1, ["No W&B tables"]),
    # a folder of Parquet files is a dataset: a damaged file is named
    (["{tmp}", "--method", "pca"], 1, ["bad.parquet is not a readable Parquet file"]),
    (["p/r/k", "--method", "pca"], 1, ["neither a file nor a logged table"]),
])
def test_project_errors_are_one_line_and_a_non_zero_exit(args, code, fragments, csv_file,
                                                         tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    names = {"empty": tmp_path / "empty", "missing": tmp_path / "missing.csv", "csv": csv_file, "tmp": tmp_path,
             "corrupt": tmp_path / "bad.parquet", "ragged": tmp_path / "ragged.csv",
             "text": tmp_path / "notes.txt"}
    args = [a.format(**names) for a in args]
    if "--output" not in args:
        args += ["-o", str(tmp_path / "c.parquet")]
    one_error_line(embproj("project", *args), code, *fragments)
    assert not (tmp_path / "c.parquet").exists()


# -- embproj log / ls --------------------------------------------------------------------------


def test_log_then_ls(csv_file, npy_file, isolated_store):
    empty = embproj("ls")
    assert empty.returncode == 0 and empty.stdout.startswith("No projects in")
    result = embproj("log", csv_file, "--project", "demo", "--name", "first")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Logged 120 rows x 5 columns as demo/first/points (step 0)"
    assert embproj("log", npy_file, "--project", "demo", "--name", "first", "--key",
                   "points").returncode == 0
    logged = ep.load_table("demo", "first", "points", step=0)
    assert logged == cli.read_source(str(csv_file)).table
    assert ep.load_table("demo", "first", "points").column_types == {"embedding": "vector"}
    listing = embproj("ls").stdout.splitlines()
    assert listing[:2] == ["demo", "  first"]
    assert listing[2].startswith("    points: 150 rows x 1 columns, 2 steps (embedding: vector)")


def test_log_a_wandb_artifact_keeps_its_images(wandb_files, isolated_store):
    result = embproj("log", wandb_files / "artifact", "--project", "wb", "--name", "r")
    assert result.returncode == 0, result.stderr
    table = ep.load_table("wb", "r", "digits")
    assert len(table) == _wandb_files.ARTIFACT_ROWS and table.column_types["image"] == "image"


def test_log_a_run_folder_says_what_was_lost(wandb_files, isolated_store):
    result = embproj("log", wandb_files / "wandb", "--wandb-key", "digits", "--project", "wb")
    assert result.returncode == 0, result.stderr
    assert "note: Column(s) 'image' (Image) could not be recovered" in result.stderr


@pytest.mark.parametrize("args, code, fragment", [
    (["{csv}"], 2, "--project"),
    (["{csv}", "--project", "../up"], 1, "contains '..'"),
    (["{csv}", "--project", "p", "--key", "a/b"], 1, "table key"),
    (["{tmp}/missing.npz", "--project", "p"], 1, "no such file or folder"),
])
def test_log_errors_are_one_line(args, code, fragment, csv_file, tmp_path, isolated_store):
    args = [a.format(csv=csv_file, tmp=tmp_path) for a in args]
    one_error_line(embproj("log", *args), code, fragment)
    assert not isolated_store.exists() or ep.list_projects(isolated_store) in ([], ["p"])


# -- embproj serve ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 180) -> str:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"embproj serve exited: {process.stderr.read()}")
        try:
            response = requests.get(url, timeout=60)  # a first page can take a while
            if response.status_code == 200:
                return response.text
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def serving(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "embproj_panel", "serve", *map(str, args), "--port", str(port),
         "--allow-websocket-origin", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, f"http://127.0.0.1:{port}/"


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def test_serve_a_file_answers_http(csv_file):
    process, url = serving(csv_file)
    try:
        page = wait_for(url, process)
        assert "embproj-panel" in page and "bokeh" in page.lower()
    finally:
        stop(process)
    assert f"Serving on {url}" in process.stdout.read()


@pytest.mark.parametrize("args, fragment", [
    (["{tmp}/missing.csv"], "no such file or folder"),
    (["--wandb-dir", "{tmp}/nowhere"], "--wandb-dir"),
    (["{tmp}/bad.npy"], "bad.npy"),
    (["--port", "x"], "invalid int value"),
])
def test_serve_errors_are_one_line(args, fragment, tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPYgarbage")
    args = [a.format(tmp=tmp_path) for a in args]
    result = embproj("serve", *args, timeout=120)
    one_error_line(result, 2 if "--port" in args else 1, fragment)


def test_serve_on_a_taken_port_is_one_line(csv_file):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = embproj("serve", csv_file, "--port", str(port), timeout=120)
    one_error_line(result, 1, f"cannot serve on 127.0.0.1:{port}")
