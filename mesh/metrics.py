"""Prometheus metrics: RED per gRPC method, breaker states, and the /metrics port.

Each process owns one CollectorRegistry (held by its App) instead of the
library's global default, so several servers can run in one test process
without counting into each other.
"""

from __future__ import annotations

from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Latency buckets tuned for in-cluster RPCs: sub-millisecond to a few seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Requests, errors and duration for every served method."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_service", "grpc_method"]
        self.started = Counter("grpc_server_started", "RPCs started on the server.", labels, registry=registry)
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC, by method.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class BreakerMetrics:
    """Circuit-breaker state per protected dependency: 0 closed, 1 half-open, 2 open."""

    STATES: ClassVar[dict[str, int]] = {"closed": 0, "half-open": 1, "open": 2}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge(
            "ordermesh_breaker_state",
            "Circuit breaker state (0 closed, 1 half-open, 2 open).",
            ["breaker"],
            registry=registry,
        )
        self.transitions = Counter(
            "ordermesh_breaker_transitions",
            "Circuit breaker state changes.",
            ["breaker", "to_state"],
            registry=registry,
        )

    def record(self, breaker: str, state: str) -> None:
        self.state.labels(breaker).set(self.STATES.get(state, -1))
        self.transitions.labels(breaker, state).inc()


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    _, service, method = full_method.split("/", 2) if full_method.count("/") >= 2 else ("", "", full_method)
    return service, method


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> object:
    """Start the /metrics HTTP endpoint in a daemon thread; returns the server to shut down."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
