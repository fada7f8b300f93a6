"""The Prometheus alert rules parse and behave as their unit tests say (promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: run 'make setup' (Debian package prometheus)"
    result = subprocess.run([binary, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rules_are_valid() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    count = sum(len(group["rules"]) for group in rules["groups"])
    assert count >= 11
    assert f"SUCCESS: {count} rules found" in promtool("check", "rules", "alerts.yml")


def test_every_alert_says_how_bad_for_how_long_and_what_to_do() -> None:
    rules = [
        rule for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for rule in group["rules"]
    ]
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["for"], rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_quiet() -> None:
    """promtool only runs the cases written: each alert needs one where it fires and one where it must not."""
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    cases = [
        case
        for test in yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts - fired == set(), "never seen firing"
    assert alerts - quiet == set(), "never seen staying quiet"


def test_rules_fire_when_they_should() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
