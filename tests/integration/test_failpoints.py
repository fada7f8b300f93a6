"""Failpoints crash only when enabled by FAILPOINTS and armed by SIGUSR1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

SCRIPT = """
import os, signal, sys
from mesh import failpoints
failpoints.install()
failpoints.crash_here("forwarder.sent")  # not armed yet: passes
print("passed", flush=True)
if len(sys.argv) > 1:
    os.kill(os.getpid(), signal.SIGUSR1)
failpoints.crash_here("other")  # not named in FAILPOINTS: passes even when armed
failpoints.crash_here("forwarder.sent")
print("survived", flush=True)
"""


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=30
    )


def test_an_armed_failpoint_kills_the_process_there() -> None:
    result = _run({"FAILPOINTS": "forwarder.sent"}, "arm")
    assert result.returncode == -signal.SIGKILL
    assert result.stdout == "passed\n"


def test_an_unarmed_failpoint_passes() -> None:
    assert _run({"FAILPOINTS": "forwarder.sent"}).stdout == "passed\nsurvived\n"


def test_without_failpoints_sigusr1_is_not_taken_over() -> None:
    result = _run({"FAILPOINTS": ""}, "arm")
    assert result.returncode == -signal.SIGUSR1  # the default action: no handler was installed
