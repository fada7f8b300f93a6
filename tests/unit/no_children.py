"""The unit suite starts no process: a guard that refuses spawns and counts children.

Two checks, because each misses what the other sees:

- every way Python starts a process is refused while unit tests run: fork and
  forkpty, posix_spawn, _posixsubprocess.fork_exec (what subprocess, asyncio's
  subprocesses and multiprocessing's spawn end in), os.system, and asyncio's
  create_subprocess_* (which an event loop such as uvloop may implement
  natively). The test that spawns fails where it does, and the attempt is kept,
  so code that swallows the error still fails the run;
- this process's children are read from /proc before and after: a child started
  by native code, past the first check, is seen if it is still alive.

The conftest fails the run when either found something.
"""

from __future__ import annotations

import _posixsubprocess
import asyncio
import asyncio.subprocess
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# (module, function): everything that starts a process, looked up by name at call time.
SPAWNERS: list[tuple[object, str]] = [
    (_posixsubprocess, "fork_exec"),
    # subprocess binds fork_exec at import (as _fork_exec): patching the module above misses it.
    (subprocess, "_fork_exec"),
    (os, "fork"),
    (os, "forkpty"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
    (os, "system"),
    (asyncio, "create_subprocess_exec"),
    (asyncio, "create_subprocess_shell"),
    (asyncio.subprocess, "create_subprocess_exec"),
    (asyncio.subprocess, "create_subprocess_shell"),
]


class ChildProcessRefused(RuntimeError):
    """A unit test tried to start a process: it belongs in tests/integration."""


class Guard:
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def install(self, patch: pytest.MonkeyPatch) -> None:
        for module, name in SPAWNERS:
            if hasattr(module, name):
                patch.setattr(module, name, self._refuse(name))

    def _refuse(self, name: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            what = f"{name}({repr(args[0])[:200] if args else ''})"
            self.attempts.append(what)
            raise ChildProcessRefused(f"unit tests start no process: {what}; move the test to tests/integration")

        return refused


def children(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """The live children of ``pid``: every process whose parent it is (empty without /proc)."""
    found: set[int] = set()
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found
