"""monitoring/: the Prometheus configurations, the PromQL of every rule and
dashboard, the Grafana files, and the OpenTelemetry Collector configuration,
checked with promtool and a collector binary that really runs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from launcher.mesh import CONTEXTS, GATEWAY_METRICS_PORT, endpoints
from mesh.local.procs import free_port, port_open, wait_until
from tests.monitoring_support import (
    DASHBOARDS,
    EXPORTED,
    MONITORING,
    ROOT,
    SYNTHETIC,
    all_queries,
    dashboard_queries,
    dashboards,
    exposed_series,
    metric_names,
    panels,
    substitute,
    used_names,
)

COLLECTOR_CONFIG = MONITORING / "otel-collector.yaml"


def promtool(*args: str, binary: str | None = None, cwd: Path = MONITORING) -> str:
    binary = binary or shutil.which("promtool")
    assert binary, "promtool not found: run 'make setup' (Debian package prometheus)"
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- Prometheus ---------------------------------------------------------------


def test_local_config_is_valid_and_loads_the_rules() -> None:
    output = promtool("check", "config", "prometheus.yml")
    rules = sum(len(group["rules"]) for group in load(MONITORING / "alerts.yml")["groups"])
    assert f"SUCCESS: {rules} rules found" in output


def test_local_config_scrapes_every_context_where_the_launcher_puts_it() -> None:
    config = load(MONITORING / "prometheus.yml")
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in config["scrape_configs"]
    }
    for endpoint in endpoints():
        # job = the context: the rules and dashboards group by it.
        assert jobs[endpoint.context] == [f"127.0.0.1:{endpoint.metrics_port}"]
    assert jobs["gateway"] == [f"127.0.0.1:{GATEWAY_METRICS_PORT}"]
    assert set(jobs) - set(CONTEXTS) == {"gateway", "otel-collector"}


def kubernetes_promtool() -> str | None:
    """A promtool built with Kubernetes discovery (Debian's is not)."""
    for candidate in (os.environ.get("PROMTOOL_K8S"), str(ROOT / ".tools/bin/promtool"), shutil.which("promtool")):
        if candidate and Path(candidate).is_file():
            probe = subprocess.run(
                [candidate, "check", "config", "/dev/stdin"],
                input="scrape_configs: [{job_name: k, kubernetes_sd_configs: [{role: pod}]}]\n",
                capture_output=True,
                text=True,
                timeout=60,
            )
            if probe.returncode == 0:
                return candidate
    return None


def test_kubernetes_config_is_valid(tmp_path: Path) -> None:
    binary = kubernetes_promtool()
    if binary is not None:
        promtool("check", "config", "prometheus-kubernetes.yml", binary=binary)
        return
    # Debian's promtool has no Kubernetes discovery: check everything else (the
    # relabelling, the rule files) with the discovery swapped for a static target.
    config = load(MONITORING / "prometheus-kubernetes.yml")
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["pod:9464"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(MONITORING / "alerts.yml", tmp_path)
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml", cwd=tmp_path)


def relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's keep/drop/replace relabelling (the parts the config uses)."""
    labels = dict(labels)
    for rule in rules:
        value = ";".join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            labels[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$1", r"\1"))
    return labels


def test_kubernetes_config_finds_each_context_of_the_chart_as_its_job() -> None:
    """Pod discovery applied to the chart's own rendering (k8s/ordermesh.yaml):
    every context's metrics port is a target with job = the context; nothing
    else (the dev Redis and MariaDB, the gRPC port) is."""
    job = next(
        j for j in load(MONITORING / "prometheus-kubernetes.yml")["scrape_configs"] if j["job_name"] == "ordermesh"
    )
    namespaces = job["kubernetes_sd_configs"][0]["namespaces"]["names"]
    objects = [o for o in yaml.safe_load_all((ROOT / "k8s/ordermesh.yaml").read_text()) if o]
    found: dict[str, str] = {}
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        template = deployment["spec"]["template"]
        for container in template["spec"]["containers"]:
            for port in container.get("ports", []):
                meta = {
                    "__meta_kubernetes_namespace": "ordermesh",
                    "__meta_kubernetes_pod_phase": "Running",
                    "__meta_kubernetes_pod_name": f"{deployment['metadata']['name']}-0",
                    "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                    **{
                        "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
                        for k, v in template["metadata"]["labels"].items()
                    },
                }
                labels = relabel(job["relabel_configs"], meta)
                if labels is not None:
                    found[labels["job"]] = f"{port['containerPort']}"
    assert found == dict.fromkeys((*CONTEXTS, "gateway"), "9464")
    assert "ordermesh" in namespaces  # `kubectl apply -k k8s/` and the docs use this namespace


def test_compose_jobs_are_named_like_the_contexts() -> None:
    config = load(ROOT / "compose/prometheus.yml")
    for job in config["scrape_configs"]:
        hosts = {target.split(":")[0] for sc in job["static_configs"] for target in sc["targets"]}
        assert hosts == {job["job_name"]}
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


# --- PromQL of the rules and the dashboards -----------------------------------


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'sum by (job, le) (rate(foo_bucket{grpc_code=~"A|B", x="rate(y)"}[5m] offset 1h)) / on (job) '
        "group_left (le) bar_total > bool 1e3 and time() - max(baz) > 10 unless qux[5m:1m] or atan2 inf"
    )
    assert metric_names(expr) == {"foo_bucket", "bar_total", "baz", "qux"}
    assert metric_names("up == 0") == {"up"}


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    queries = all_queries()
    rules = {
        "groups": [
            {"name": "check", "rules": [{"record": f"check:q{i}", "expr": q.promql} for i, q in enumerate(queries)]}
        ]
    }
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "rules", "queries.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:  # name the query, not only its index
        bad = [q for i, q in enumerate(queries) if f"check:q{i}" in result.stdout + result.stderr]
        pytest.fail(f"{result.stdout}{result.stderr}\n" + "\n".join(f"{q.where}: {q.promql}" for q in bad))
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_queries_name_only_metrics_the_mesh_exports() -> None:
    unknown = {name: where for name, where in used_names().items() if name not in EXPORTED | SYNTHETIC}
    assert not unknown, f"not exported by any process: {unknown}"


def family_of(name: str) -> str:
    return re.sub(r"_(total|bucket|sum|count)$", "", name)


def test_dashboards_show_every_metric_the_mesh_exports() -> None:
    shown = {family_of(name) for q in dashboard_queries() for name in metric_names(q.promql)}
    assert {family_of(name) for name in EXPORTED} - shown == set()


def test_grafana_variables_are_substituted_or_refused() -> None:
    assert substitute('rate(x{s=~"$service"}[$__rate_interval])', {"service"}) == 'rate(x{s=~".*"}[20s])'
    assert substitute("increase(x[${__range}])", set()) == "increase(x[1h])"
    with pytest.raises(ValueError, match="unknown variable"):
        substitute('x{s=~"$servce"}', {"service"})


def test_exposed_series_include_declared_metrics_without_samples() -> None:
    exposition = (
        "# HELP a_total x\n# TYPE a_total counter\n"
        "# HELP b x\n# TYPE b counter\n"
        "# HELP c_seconds x\n# TYPE c_seconds histogram\n"
        "# HELP d x\n# TYPE d gauge\nd 1.0\n"
        'e_total{x="y"} 2.0\n'
    )
    assert exposed_series(exposition) >= {
        "a_total",
        "b_total",
        "c_seconds_bucket",
        "c_seconds_sum",
        "c_seconds_count",
        "d",
        "e_total",
    }
    assert "a_total_total" not in exposed_series(exposition)


# --- Grafana ------------------------------------------------------------------

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_dashboards_are_well_formed_grafana_json() -> None:
    boards = dashboards()
    assert set(boards) == {
        "analytics.json",
        "order-funnel.json",
        "place-order-red.json",
        "pipeline.json",
        "stock.json",
        "dependencies.json",
    }
    uids = [b["uid"] for b in boards.values()]
    titles = [b["title"] for b in boards.values()]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)
    for name, board in boards.items():
        assert len(board["uid"]) <= 40 and re.fullmatch(r"[a-z0-9-]+", board["uid"]), name
        assert board["schemaVersion"] == 39 and "ordermesh" in board["tags"], name
        variables = board["templating"]["list"]
        datasource = next(v for v in variables if v["name"] == "datasource")
        assert datasource["type"] == "datasource" and datasource["query"] == "prometheus", name
        ids = [p["id"] for p in panels(board)]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for panel in panels(board):
            where = f"{name}: {panel['title']}"
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, where
            covered = {
                (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not covered & cells, f"{where} overlaps another panel"
            cells |= covered
            if panel["type"] == "row":
                continue
            assert panel["type"] in {"timeseries", "stat", "state-timeline"}, where
            assert panel["datasource"] == DATASOURCE, where
            assert panel.get("description"), f"{where}: say what it shows"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert ref_ids and len(set(ref_ids)) == len(ref_ids), where
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE and target["expr"].strip(), where


def test_provisioning_points_grafana_at_the_dashboards_and_prometheus() -> None:
    provisioning = MONITORING / "grafana" / "provisioning"
    datasources = load(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert [d["type"] for d in datasources] == ["prometheus"] and datasources[0]["isDefault"]
    # $__rate_interval needs the scrape interval to keep at least two samples per window.
    assert (
        datasources[0]["jsonData"]["timeInterval"] == load(MONITORING / "prometheus.yml")["global"]["scrape_interval"]
    )
    (provider,) = load(provisioning / "dashboards" / "ordermesh.yaml")["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("/ordermesh")
    assert DASHBOARDS.is_dir()


# --- OpenTelemetry Collector --------------------------------------------------


def test_collector_config_forwards_traces_and_derives_span_metrics() -> None:
    config = load(COLLECTOR_CONFIG)
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    assert config["exporters"]["otlp/jaeger"]["endpoint"].endswith("jaeger:4317}")
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["receivers"] == ["otlp"]
    assert set(pipelines["traces"]["exporters"]) == {"otlp/jaeger", "spanmetrics"}
    metrics = next(p for name, p in pipelines.items() if name.startswith("metrics"))
    assert metrics["receivers"] == ["spanmetrics"] and metrics["exporters"] == ["prometheus"]
    for pipeline in pipelines.values():
        # memory_limiter first (refuse before buffering), batch last.
        assert pipeline["processors"][0] == "memory_limiter" and pipeline["processors"][-1] == "batch"
    used = {c for p in pipelines.values() for kind in ("receivers", "processors", "exporters") for c in p[kind]}
    defined = {c for kind in ("receivers", "processors", "exporters", "connectors") for c in config[kind]}
    assert used == defined, "a component defined and not used, or used and not defined"


def collector_binary() -> str:
    """A collector distribution with the spanmetrics connector and the prometheus
    exporter: $OTELCOL_BINARY, the project's Jaeger v2 (built on the collector,
    `make tools-jaeger`), or otelcol-contrib."""
    for candidate in (
        os.environ.get("OTELCOL_BINARY"),
        str(ROOT / ".tools/bin/jaeger"),
        shutil.which("otelcol-contrib"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no collector binary: `make tools-jaeger` builds one (.tools/bin/jaeger), or set OTELCOL_BINARY")


def test_collector_accepts_the_config() -> None:
    binary = collector_binary()
    result = subprocess.run(
        [binary, "validate", f"--config={COLLECTOR_CONFIG}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_collector_refuses_a_broken_config(tmp_path: Path) -> None:
    """So that the test above can fail: a misspelt key is an error."""
    binary = collector_binary()
    broken = tmp_path / "broken.yaml"
    broken.write_text(COLLECTOR_CONFIG.read_text().replace("send_batch_size:", "send_batch_sizes:"))
    result = subprocess.run([binary, "validate", f"--config={broken}"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "send_batch_sizes" in result.stdout + result.stderr


class FakeJaeger(trace_service_pb2_grpc.TraceServiceServicer):
    """Jaeger's OTLP intake, remembering the span names it was sent."""

    def __init__(self) -> None:
        self.span_names: list[str] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            self.span_names += [s.name for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def fake_jaeger() -> Iterator[tuple[FakeJaeger, int]]:
    servicer = FakeJaeger()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(grace=None)


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def test_collector_forwards_spans_to_jaeger_and_exports_span_metrics(
    tmp_path: Path, fake_jaeger: tuple[FakeJaeger, int]
) -> None:
    """The configuration itself, run: a server span sent over OTLP reaches
    "Jaeger" and comes out as a latency histogram with its gRPC code."""
    binary = collector_binary()
    jaeger, jaeger_port = fake_jaeger
    otlp_port, http_port, prometheus_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "OTELCOL_OTLP_GRPC": f"127.0.0.1:{otlp_port}",
        "OTELCOL_OTLP_HTTP": f"127.0.0.1:{http_port}",
        "OTELCOL_PROMETHEUS": f"127.0.0.1:{prometheus_port}",
        "JAEGER_OTLP_ENDPOINT": f"127.0.0.1:{jaeger_port}",
        "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
        "OTELCOL_TELEMETRY_PORT": str(free_port()),
    }
    log = (tmp_path / "collector.log").open("wb")
    process = subprocess.Popen([binary, f"--config={COLLECTOR_CONFIG}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_open(otlp_port) or process.poll() is not None, 30, "the collector's OTLP port")
        assert process.poll() is None, (tmp_path / "collector.log").read_text()
        provider = TracerProvider(resource=Resource.create({"service.name": "ordermesh-checkout"}))
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{otlp_port}", insecure=True))
        )
        with provider.get_tracer("test").start_as_current_span(
            "ordermesh.checkout.v1.CheckoutService/PlaceOrder", kind=SpanKind.SERVER
        ) as span:
            span.set_attribute("rpc.grpc.status_code", 9)
        provider.shutdown()
        histogram = re.compile(
            r'traces_span_metrics_duration_seconds_count\{[^}]*rpc_grpc_status_code="9"[^}]*'
            r'span_name="ordermesh\.checkout\.v1\.CheckoutService/PlaceOrder"[^}]*\} 1\b'
        )
        # The connector flushes every 15 s.
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not (histogram.search(scrape(prometheus_port)) and jaeger.span_names):
            time.sleep(0.5)
        metrics = scrape(prometheus_port)
        assert histogram.search(metrics), metrics or (tmp_path / "collector.log").read_text()
        assert 'service_name="ordermesh-checkout"' in metrics
        assert jaeger.span_names == ["ordermesh.checkout.v1.CheckoutService/PlaceOrder"]
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
