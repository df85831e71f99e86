"""What the engines share about the machine they run on: CPUs, numba's cache and runtime."""

from __future__ import annotations

import threading
from pathlib import Path

__all__ = ["NUMBA_PARALLEL", "configure_numba_cache", "n_threads", "release_free_memory"]


def n_threads() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


_MALLOC_TRIM: list = []  # [glibc's malloc_trim, or None where there is none], looked up once


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim(0)``).

    A projection of a million rows frees hundreds of MB of 1-30 MB temporaries (numpy
    arrays, datashader aggregates). glibc raises its mmap threshold after the first large
    free, so later arrays of that size come from its heap and arenas, and freeing them
    returns nothing to the OS: a server's RSS then grew a step with every projection
    (issue 15: 2.77x the table at 1,000,000 rows, 0.35x of it free heap). Called by the
    projection worker once a job ends; milliseconds. Elsewhere than glibc it does nothing.

    Returns
    -------
    bool
        Whether memory was released (glibc's answer).
    """
    if not _MALLOC_TRIM:
        import ctypes
        import sys

        trim = None
        if sys.platform.startswith("linux"):
            try:
                trim = ctypes.CDLL("libc.so.6").malloc_trim
                trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
            except (OSError, AttributeError):  # musl and other C libraries
                trim = None
        _MALLOC_TRIM.append(trim)
    trim = _MALLOC_TRIM[0]
    return bool(trim(0)) if trim is not None else False


def configure_numba_cache() -> Path:
    """Give numba a persistent on-disk cache, unless ``NUMBA_CACHE_DIR`` is already set.

    umap-learn's and pynndescent's code (and this module's UMAP kernel) is compiled by numba
    on first use: tens of seconds. With a persistent cache directory that happens once per
    machine instead of once per process. The default is
    ``$XDG_CACHE_HOME/embproj-panel/numba`` (``~/.cache/embproj-panel/numba``); when it
    cannot be created, a per-user folder in the temporary directory.

    Called by UMAP before umap-learn is imported, and by ``warm_up``; never at
    ``import embproj_panel``. It sets an environment variable of this process, which every
    numba user in the process shares (harmless: the cache is keyed by function and source).

    Returns
    -------
    pathlib.Path
        The cache directory in use.
    """
    import os
    import sys
    import tempfile

    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "embproj-panel" / "numba"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / f"embproj-panel-numba-{os.getuid()}"
        path.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    if "numba" in sys.modules:  # imported earlier by someone else: make it re-read the env
        sys.modules["numba"].config.reload_config()
    return path


# numba's parallel runtime (the "workqueue" layer on machines without TBB or OpenMP) must not
# be entered from two threads at once; two projections in two threads take turns per epoch.
NUMBA_PARALLEL = threading.Lock()


class Cancelled(Exception):  # noqa: N818 - the name reads as a state, like asyncio's
    """The computation was cancelled by its ``cancel()`` callback.

    Defined here, beside the other pieces the engines share, so that the neighbour index,
    the engines and the reducers all raise the same class without importing one another.
    """
