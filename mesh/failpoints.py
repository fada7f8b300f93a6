"""Failpoints: places in the code where a chaos run may crash a process at one
exact moment, such as between sending a batch and acknowledging it.

Off unless the process starts with ``FAILPOINTS`` naming them (comma-separated);
then SIGUSR1 arms them, and the next time the process passes an armed point it
SIGKILLs itself, as a crash would at that line. A process restarted after that
is not armed until the next SIGUSR1. Passing a point costs one set lookup.
"""

from __future__ import annotations

import os
import signal

_enabled: frozenset[str] = frozenset()
_armed: set[str] = set()


def install() -> None:
    """Read FAILPOINTS; with any named, SIGUSR1 arms them all."""
    global _enabled
    _enabled = frozenset(name.strip() for name in os.environ.get("FAILPOINTS", "").split(",") if name.strip())
    if _enabled:
        signal.signal(signal.SIGUSR1, lambda _signal, _frame: _armed.update(_enabled))


def crash_here(name: str) -> None:
    """SIGKILL this process if the failpoint ``name`` is armed."""
    if name in _armed:
        os.kill(os.getpid(), signal.SIGKILL)
