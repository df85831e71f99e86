"""``in_loop``: run a synchronous test body inside a running asyncio loop.

As a notebook kernel or a served session runs the views' callbacks (HoloViews streams and
the state's dispatch need a running loop). ``tests/`` is on ``sys.path`` through its conftest.
"""

from __future__ import annotations

import asyncio
import functools


def in_loop(test):
    """Decorate a test so that its body runs inside ``asyncio.run``."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        async def body():
            return test(*args, **kwargs)

        return asyncio.run(body())

    return wrapper
