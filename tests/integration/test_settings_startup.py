"""A process with a bad environment variable refuses to start, naming it (a real child process).

Moved from tests/unit/test_settings.py: the unit suite starts no process.
"""

from __future__ import annotations

import os
import subprocess
import sys


def test_process_refuses_to_start_naming_the_variable() -> None:
    env = {**os.environ, "SHUTDOWN_GRACE_SECONDS": "-1"}
    result = subprocess.run([sys.executable, "-m", "shipping"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "SHUTDOWN_GRACE_SECONDS" in result.stderr
