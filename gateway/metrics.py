"""The gateway's Prometheus metrics, in the process's own registry (served on
METRICS_PORT by ``mesh.metrics.serve_metrics``, like every context).

Requests are counted by route template (``/api/orders/{id}``), never by raw
path: ids would make a series per order.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mesh.metrics import LATENCY_BUCKETS

# Beyond the RPC buckets: a PlaceOrder may wait for a duplicate's first attempt.
HTTP_BUCKETS = (*LATENCY_BUCKETS, 15.0, 30.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ordermesh_gateway_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "ordermesh_gateway_request_duration_seconds",
            "Time to answer an HTTP request (to the end of the body; SSE streams are not observed).",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.open_streams = Gauge(
            "ordermesh_gateway_sse_streams",
            "Server-Sent Events streams open now, by stream (order, operator).",
            ["stream"],
            registry=registry,
        )
        self.stream_resets = Counter(
            "ordermesh_gateway_stream_resets",
            "Times the gateway found event stream entries trimmed before it read them (subscribers got a reset).",
            ["stream"],
            registry=registry,
        )
        for stream in ("order", "operator"):
            self.open_streams.labels(stream)
