"""The Prometheus alert rules parse and behave as their unit tests say (promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: run 'make setup' (Debian package prometheus)"
    result = subprocess.run([binary, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rules_are_valid() -> None:
    assert "SUCCESS: 3 rules found" in promtool("check", "rules", "alerts.yml")


def test_rules_fire_when_they_should() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
