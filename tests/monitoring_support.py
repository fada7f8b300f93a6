"""What monitoring/ asks of the mesh: the PromQL of every alert rule and
dashboard, the metric names it uses, and the metric names the mesh may
export. Shared by the integration test (offline) and the e2e test (scrapes)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "monitoring"
DASHBOARDS = MONITORING / "grafana" / "dashboards"

# Every series name the mesh's processes expose (or are about to), as scraped:
# counters with `_total`, histograms as `_bucket`, `_sum` and `_count`.
EXPORTED = frozenset(
    {
        # every process
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "grpc_server_handling_seconds_sum",
        "grpc_server_handling_seconds_count",
        "ordermesh_breaker_state",
        "ordermesh_breaker_transitions_total",
        "ordermesh_job_runs_total",
        "ordermesh_job_last_success_timestamp_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        # order
        "ordermesh_orders_placed_total",
        "ordermesh_orders_paid_total",
        "ordermesh_orders_cancelled_total",
        "ordermesh_orders_shipped_total",
        "ordermesh_orders_in_status",
        "ordermesh_money_actions_total",
        # checkout
        "ordermesh_checkout_place_order_total",
        # catalog
        "ordermesh_stock_reservations_total",
        "ordermesh_stock_path",
        "ordermesh_stock_reservation_outcomes_total",
        "ordermesh_stock_quota_units",
        "ordermesh_stock_products_exhausted",
        "ordermesh_stock_refills_total",
        "ordermesh_stock_refilled_units_total",
        "ordermesh_flusher_lag_seconds",
        "ordermesh_flusher_applied_entries_total",
        "ordermesh_flusher_dead_lettered_entries_total",
        "ordermesh_stock_stranded_units",
        # event bus
        "ordermesh_forwarder_lag_seconds",
        "ordermesh_forwarder_relayed_events_total",
        "ordermesh_forwarder_send_calls_total",
        "ordermesh_forwarder_fallback_events_total",
        "ordermesh_consumer_lag_seconds",
        "ordermesh_consumer_batch_size_bucket",
        "ordermesh_consumer_batch_size_sum",
        "ordermesh_consumer_batch_size_count",
        "ordermesh_dead_letters_total",
    }
)
# Series Prometheus writes itself for every target: never in a scrape.
SYNTHETIC = frozenset({"up"})
# Only forwarders export these, and forwarders run only on the rocketmq transport.
ROCKETMQ_ONLY = frozenset(
    {
        "ordermesh_forwarder_lag_seconds",
        "ordermesh_forwarder_relayed_events_total",
        "ordermesh_forwarder_send_calls_total",
        "ordermesh_forwarder_fallback_events_total",
    }
)

# Grafana's own variables, as a query reaches Prometheus: any valid value will do
# to check the PromQL around them.
GRAFANA_BUILTINS = {"__rate_interval": "20s", "__interval": "5s", "__range": "1h"}
# Multi-value query variables end up inside a regex matcher (`=~"$service"`).
VARIABLE_VALUE = ".*"


@dataclass(frozen=True)
class Query:
    where: str  # "alerts.yml: OrdermeshBreakerOpen", "pipeline.json: Batch size by group (B)"
    promql: str  # as Prometheus receives it: Grafana's variables replaced


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def substitute(expr: str, variables: set[str]) -> str:
    """A dashboard query as Prometheus receives it; an unknown variable is an error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name in variables:
            return VARIABLE_VALUE
        raise ValueError(f"unknown variable ${name} in {expr!r}")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def dashboard_queries() -> list[Query]:
    queries: list[Query] = []
    for name, board in dashboards().items():
        variables = {v["name"] for v in board["templating"]["list"]}
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            # label_values(metric, label): the metric is what has to exist.
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.strip())
            assert match, f"{name}: variable {variable['name']}: only label_values(metric, label) is expected"
            queries.append(Query(f"{name}: variable {variable['name']}", substitute(match.group(1), variables)))
        for panel in panels(board):
            for target in panel.get("targets", []):
                where = f"{name}: {panel['title']} ({target['refId']})"
                queries.append(Query(where, substitute(target["expr"], variables)))
    return queries


def rule_queries() -> list[Query]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [
        Query(f"alerts.yml: {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def all_queries() -> list[Query]:
    return rule_queries() + dashboard_queries()


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
# An identifier that does not continue a number (10m, 1e3) or a name.
_IDENTIFIER = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "atan2",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "start",
    "end",
}


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression selects (its syntax checked by promtool apart)."""
    text = _STRINGS.sub('""', promql)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if word.lower() in _KEYWORDS or rest.startswith("("):  # a function or an aggregation
            continue
        names.add(word)
    return names


def used_names() -> dict[str, list[str]]:
    """Metric name -> where it is used."""
    used: dict[str, list[str]] = {}
    for query in all_queries():
        for name in metric_names(query.promql):
            used.setdefault(name, []).append(query.where)
    return used


_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


def exposed_series(exposition: str) -> set[str]:
    """Every series name a /metrics page offers, declared metrics without a
    sample yet included (a labelled counter before its first increment): from
    each `# TYPE name kind` line with the suffixes of its kind, and from the
    sample lines themselves."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            kind = kind.strip()
            if kind == "counter":  # named with or without `_total` on its TYPE line
                name = name.removesuffix("_total")
            names.update(name + suffix for suffix in _SERIES_SUFFIXES.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names
