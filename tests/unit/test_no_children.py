"""The unit suite's guard against child processes refuses every way of starting one."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.no_children import ChildProcessRefused, Guard, children


@pytest.fixture
def attempts(child_guard: Guard) -> Iterator[list[str]]:
    """The attempts a test makes on purpose; dropped afterwards, so they do not fail the run."""
    already = len(child_guard.attempts)
    yield child_guard.attempts
    del child_guard.attempts[already:]


def run_subprocess() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def start_multiprocessing() -> None:
    multiprocessing.get_context("spawn").Process(target=print).start()


def fork() -> None:
    os.fork()


def system() -> None:
    os.system("true")


@pytest.mark.parametrize("spawn", [run_subprocess, start_multiprocessing, fork, system])
def test_spawning_is_refused_and_remembered(attempts: list[str], spawn: Callable[[], None]) -> None:
    with pytest.raises(ChildProcessRefused, match="move the test to tests/integration"):
        spawn()
    assert attempts, "remembered: code that swallows the error still fails the run"


async def test_an_asyncio_subprocess_is_refused(attempts: list[str]) -> None:
    with pytest.raises(ChildProcessRefused):
        await asyncio.create_subprocess_exec("true")
    assert attempts == ["create_subprocess_exec('true')"]


def test_children_are_read_from_proc(tmp_path: Path) -> None:
    def process(pid: int, comm: str, ppid: int) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} 0 0\n")

    process(10, "pytest", 1)
    process(11, "redis-server", 10)
    process(12, "odd) name (", 10)  # a command name with parentheses and spaces
    process(13, "other", 1)
    (tmp_path / "self").mkdir()
    assert children(10, tmp_path) == {11, 12}
    assert children(10, tmp_path / "missing") == set()
