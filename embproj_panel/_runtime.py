"""What the engines share about the machine they run on."""

from __future__ import annotations

__all__ = ["n_threads"]


def n_threads() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
