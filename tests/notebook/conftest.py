"""A real JupyterLab for the notebook tests, driven by Debian's Chromium through Playwright.

One JupyterLab per test module, as a user starts it (``python -m jupyterlab``), on 127.0.0.1
with a random port and token, and isolated from the machine: its root, its ``JUPYTER_*``
config, data and runtime directories, its lab settings and workspaces are temporary, so
neither the user's configuration nor a previous run leaks in. Its kernel spec is written by
the fixture (this interpreter, this checkout first on the path), not registered by hand.

The tests talk to the notebook's kernel in two ways: through the page, as a user does, and
through a second client of the same kernel (``jupyter_client`` with the kernel's connection
file), which reads values such as ``projector.selection`` exactly as the kernel holds them.
A second client's requests queue behind the cells the page runs, which makes "run the
cells, then ask" a natural barrier.

JupyterLab's lab settings here: windowing mode ``defer`` (the ``full`` mode of JupyterLab
4.4+ drops canvas outputs, jupyterlab/jupyterlab#17815), no news or update checks and a
read-only extension manager (nothing asks the internet from the browser or the server), and
no build check (its page config ``buildCheck``: the server would read every extension's
package.json for each page load, 10-15 s of CPU on a loaded machine, to say the prebuilt
lab is up to date). Comms over kernel subshells stay JupyterLab's default, as users have them.

Time: the module shares one JupyterLab, one kernel, one browser and one run of the README's
example across its tests. The kernel is started (through the server's REST API, as the page
would) and imports the example's packages while the browser loads JupyterLab; umap-learn's
numba code is compiled (or loaded from numba's cache) in the background, in this process,
for the one test that runs UMAP.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _browser_support import CHROMIUM, CHROMIUM_ARGS, free_port, mark_folder, stop

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "screenshots"
KERNEL_NAME = "embproj-test"

#: Lab settings (plugin id -> values) written to the temporary settings directory.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "defer"},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false", "checkForUpdates": False,
    },
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
}


#: JupyterLab's page config: the prebuilt lab is used as installed, never rebuilt or checked.
PAGE_CONFIG = {"buildCheck": False, "buildAvailable": False}


def pytest_collection_modifyitems(items):
    mark_folder(items, Path(__file__).parent, "notebook")


def _isolated_env(base: Path) -> dict[str, str]:
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": base / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "workspaces",
        "IPYTHONDIR": base / "ipython",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("JUPYTER", "IPYTHON", "PANEL_", "VSCODE_"))}
    env.update({key: str(path) for key, path in dirs.items()})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _write_kernel_spec(data_dir: Path, env: dict[str, str]) -> None:
    spec_dir = data_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "embproj test",
        "language": "python",
        "env": {key: env[key] for key in ("PYTHONPATH", "NUMBA_CACHE_DIR", "EMBPROJ_DIR")
                if key in env},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))


def _write_lab_settings(settings_dir: Path, config_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        folder = settings_dir / package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
    # Read by LabApp before its defaults (jupyterlab/labapp.py, initialize_handlers).
    labconfig = config_dir / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "page_config.json").write_text(json.dumps(PAGE_CONFIG))


class JupyterLab:
    """A running JupyterLab: its URL, token, root directory and environment."""

    def __init__(self, url: str, token: str, root: Path, env: dict[str, str]) -> None:
        self.url, self.token, self.root, self.env = url, token, root, env

    def api(self, path: str, method: str = "GET", **kwargs):
        import requests

        response = requests.request(method, f"{self.url}{path}", timeout=30,
                                    headers={"Authorization": f"token {self.token}"}, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        """A notebook of code cells, for the test kernel, in the server's root."""
        import nbformat

        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {
            "name": KERNEL_NAME, "display_name": "embproj test", "language": "python",
        }
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        path = self.root / name
        nbformat.write(notebook, str(path))
        return path

    def start_kernel(self, notebook: str) -> None:
        """Start the notebook's kernel session, as the page does when it opens the notebook
        (the page then finds the session by its path)."""
        self.api("/api/sessions", method="POST", json={
            "path": notebook, "name": notebook, "type": "notebook",
            "kernel": {"name": KERNEL_NAME},
        })

    def lab_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}&reset"

    def kernel_client(self, notebook: str, timeout: float = 60):
        """A second client of the kernel behind ``notebook`` (opened in the page)."""
        deadline = time.monotonic() + timeout
        while True:
            sessions = [s for s in self.api("/api/sessions") if s["path"] == notebook]
            if sessions:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kernel session for {notebook} after {timeout} s")
            time.sleep(0.5)
        kernel_id = sessions[0]["kernel"]["id"]
        connection = Path(self.env["JUPYTER_RUNTIME_DIR"]) / f"kernel-{kernel_id}.json"
        while not connection.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{connection} was not written")
            time.sleep(0.2)
        return KernelClient(connection)


class KernelClient:
    """Runs code in a notebook's kernel and returns what it printed."""

    def __init__(self, connection_file: Path) -> None:
        from jupyter_client import BlockingKernelClient

        self._client = BlockingKernelClient(connection_file=str(connection_file))
        self._client.load_connection_file()
        # No heartbeat channel: on a loaded machine a heartbeat later than 1 s makes
        # jupyter_client declare the kernel dead; the shell replies tell us it lives.
        self._client.start_channels(hb=False)
        self._client.wait_for_ready(timeout=60)

    def submit(self, code: str) -> None:
        """Queue ``code`` in the kernel and return at once (its reply is never read)."""
        self._client.execute(code, store_history=False)

    def run(self, code: str, timeout: float = 120, **expressions: str) -> dict:
        """Execute ``code``; the values of ``expressions`` (name -> Python expression).

        Values come back in the execute reply (``user_expressions``), as JSON, not through
        printed output, whose routing a comm callback running in the kernel can change.
        """
        errors: list[str] = []

        def hook(message: dict) -> None:
            if message["msg_type"] == "error":
                errors.append("\n".join(message["content"].get("traceback", [])))

        reply = self._client.execute_interactive(
            code, timeout=timeout, output_hook=hook, store_history=False,
            user_expressions={name: f"__import__('json').dumps({expression})"
                              for name, expression in expressions.items()},
        )
        content = reply["content"]
        if content["status"] != "ok" or errors:
            raise AssertionError(re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors)) or content)
        values = {}
        for name, result in content.get("user_expressions", {}).items():
            if result.get("status") != "ok":
                raise AssertionError(f"{expressions[name]}: {result}")
            values[name] = json.loads(ast.literal_eval(result["data"]["text/plain"]))
        return values

    def value(self, expression: str, timeout: float = 120):
        """The value of a Python expression evaluated in the kernel (as JSON)."""
        return self.run("", timeout=timeout, value=expression)["value"]

    def close(self) -> None:
        self._client.stop_channels()


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 with its own temporary everything; yields a :class:`JupyterLab`."""
    pytest.importorskip("jupyterlab")
    pytest.importorskip("ipykernel")
    import embproj_panel as ep

    # In the background (at a lower priority), for the UMAP test: see ``numba_warm``.
    ep.warm_up(background=True)
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "root"
    root.mkdir()
    env = _isolated_env(base)
    env["EMBPROJ_DIR"] = str(base / "embproj-runs")
    _write_kernel_spec(Path(env["JUPYTER_DATA_DIR"]), env)
    _write_lab_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]), Path(env["JUPYTER_CONFIG_DIR"]))
    port, token = free_port(), secrets.token_hex(16)
    log_path = base / "jupyterlab.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--ServerApp.open_browser=False",
         f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
         "--ServerApp.terminals_enabled=False",
         # CI runs as root (in a container); JupyterLab refuses that without the flag.
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    lab = JupyterLab(f"http://127.0.0.1:{port}", token, root, env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyterlab exited with {process.returncode}:\n"
                                   + log_path.read_text()[-3000:])
            try:
                lab.api("/api/status")
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise TimeoutError("JupyterLab did not answer within 120 s") from None
                time.sleep(0.5)
        yield lab
    finally:
        stop(process)
        log.close()
        print(log_path.read_text()[-3000:])


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, for :func:`diagnose_failure`."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


#: The projector output's comm as the kernel holds it (embproj_panel._notebook_comm).
COMM_STATE = (
    "[dict(opened_by=c.opened_by, openings=c.openings, reports=c.reports,"
    " ready=c._outbox.ready, pending=c._outbox.pending, held=c._outbox.held)"
    " for c in __import__('pyviz_comms').JupyterCommManager._comms.values()"
    " if hasattr(c, 'opened_by')]"
)


@pytest.fixture(scope="session")
def comm_state() -> str:
    """A Python expression, for the kernel: the output comm's state (see COMM_STATE)."""
    return COMM_STATE


@pytest.fixture
def diagnose_failure(request, notebook):
    """After a failed test, print the page's console and the output comm's state.

    ``notebook`` is the test module's fixture: ``(page, kernel, outside)``.
    """
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed:
        return
    page, kernel, _ = notebook
    print("The page's console:\n" + "\n".join(getattr(page, "console_log", [])))
    try:
        print("The output's comm:", kernel.value(COMM_STATE, timeout=30))
    except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the failure
        print("The output's comm could not be read:", exc)
