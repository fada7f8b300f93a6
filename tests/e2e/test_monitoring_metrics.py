"""monitoring/ against the running mesh: every metric an alert rule or a
dashboard uses is exported by some process, and a real Prometheus with
monitoring/prometheus.yml scrapes every process and evaluates every rule."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from launcher.mesh import CONTEXTS, LocalMesh
from mesh.local.procs import free_port
from mesh.local.prometheus import PrometheusServer
from tests.monitoring_support import ROCKETMQ_ONLY, SYNTHETIC, exposed_series, used_names


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_every_metric_the_rules_and_dashboards_use_is_exported(local_mesh: LocalMesh) -> None:
    exposed: set[str] = set()
    for endpoint in local_mesh.endpoints:
        exposed |= exposed_series(scrape(endpoint.metrics_port))
    expected = set(used_names()) - SYNTHETIC
    if local_mesh.profile.transport != "rocketmq":
        expected -= ROCKETMQ_ONLY  # no forwarders on Redis Streams alone
    missing = sorted(expected - exposed)
    assert not missing, f"used by monitoring/ but exported by no process ({local_mesh.profile.transport}): {missing}"


def api(prometheus: PrometheusServer, path: str, **params: str) -> Any:
    url = f"{prometheus.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_scrapes_every_process_and_evaluates_every_rule(local_mesh: LocalMesh, tmp_path: Path) -> None:
    """What `make run MONITORING=1` starts: monitoring/prometheus.yml, its ports
    shifted like the mesh's."""
    prometheus = PrometheusServer(tmp_path / "prometheus", port=free_port(), port_offset=local_mesh.offset).start()
    try:
        deadline = time.monotonic() + 60
        up: dict[str, str] = {}
        rules: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                up = {r["metric"]["job"]: r["value"][1] for r in api(prometheus, "query", query="up")["result"]}
                rules = [rule for group in api(prometheus, "rules")["groups"] for rule in group["rules"]]
            except urllib.error.HTTPError as error:  # 503 until its storage is open
                assert error.code == 503, error
            evaluated = rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules)
            if all(up.get(context) == "1" for context in CONTEXTS) and evaluated:
                break
            time.sleep(1)
        assert {context: up.get(context) for context in CONTEXTS} == dict.fromkeys(CONTEXTS, "1")
        assert len(rules) >= 11
        broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
        assert not broken, broken
    finally:
        prometheus.stop()
