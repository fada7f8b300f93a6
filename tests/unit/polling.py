"""Waiting for async work in unit tests: poll a condition under a deadline, never a blind sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Yield to the event loop until ``condition()`` holds, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.001)
