"""Prometheus metrics of the stock engine and the write-behind flusher."""

from __future__ import annotations

from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge


class FlusherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.applied = Counter(
            "ordermesh_flusher_applied_entries", "Journal entries applied to SQL.", registry=registry
        )
        self.dead_lettered = Counter(
            "ordermesh_flusher_dead_lettered_entries", "Journal entries dead-lettered as malformed.", registry=registry
        )
        self.lag = Gauge(
            "ordermesh_flusher_lag_seconds",
            "Age of the oldest entry of the last batch read (journal entry time to now).",
            registry=registry,
        )


class StockPathMetric:
    """Which path reservations take: 0 Redis, 1 SQL, 2 switching back."""

    CODES: ClassVar[dict[str, int]] = {"redis": 0, "sql": 1, "switching": 2}

    def __init__(self, registry: CollectorRegistry, current: object) -> None:
        gauge = Gauge("ordermesh_stock_path", "Reservation path: 0 Redis, 1 SQL, 2 switching back.", registry=registry)
        gauge.set_function(lambda: float(self.CODES.get(str(getattr(current, "path", "")), -1)))
