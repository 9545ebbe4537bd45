"""Running a test's coroutine: a fresh loop, an overall timeout, no task left behind; polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
POLL_S = 0.02  # why: conditions are cheap to check; 20 ms keeps a test's latency low


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 60, leftover_timeout_s: float = 10) -> T:
    """Run coro on a fresh loop with an overall timeout (no pytest-asyncio needed).

    Tasks still running when coro is done are cancelled, again every 0.1 s, and named in an
    AssertionError if any is left after leftover_timeout_s. asyncio.run alone cancels them once
    and then waits forever, and bumble on Python 3.11 can swallow a cancel (asyncio.wait_for
    returns a result that arrived in the same loop iteration as the cancel): one leaked board
    task turned a test into a 300 s pytest-timeout.
    """

    async def main() -> T:
        try:
            return await asyncio.wait_for(coro, timeout_s)
        finally:
            deadline = time.monotonic() + leftover_timeout_s
            while left := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"tasks still running after the test: {left}")
                for task in left:
                    task.cancel()
                await asyncio.wait(left, timeout=0.1)

    return asyncio.run(main())


async def wait_until(
    pred: Callable[[], Any], timeout_s: float = 10, what: str = "condition"
) -> None:
    """Return once pred() is true; raise AssertionError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s} s")
        await asyncio.sleep(POLL_S)
