"""Prometheus metrics of the stock engine, the refills and the write-behind flusher."""

from __future__ import annotations

from collections.abc import Callable

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


class StockMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reservations = Counter(
            "ordermesh_stock_reservations",
            "Reservations made, by the path that made them (redis or sql).",
            ["path"],
            registry=registry,
        )
        self.refills = Counter(
            "ordermesh_stock_refills",
            "Refills of Redis counters from SQL, by trigger (background or inline).",
            ["trigger"],
            registry=registry,
        )
        self.refilled_units = Counter(
            "ordermesh_stock_refilled_units", "Units moved from SQL to Redis counters.", registry=registry
        )
        self.relayed = Counter(
            "ordermesh_stock_relayed_orders",
            "OrderPlaced events of SQL-path reservations published by the relay.",
            registry=registry,
        )
        self.superseded = Counter(
            "ordermesh_stock_superseded_reservations",
            "SQL-path reservations undone because Redis had reserved the same order.",
            registry=registry,
        )
        self._path = Gauge(
            "ordermesh_stock_path", "Reservation path of this replica: 0 Redis, 1 SQL.", registry=registry
        )
        self._stranded = Gauge(
            "ordermesh_stock_stranded_units",
            "Units allocated to a Redis that lost its data: unsellable until `python -m catalog reclaim`.",
            registry=registry,
        )

    def watch(self, on_sql: Callable[[], bool], stranded: Callable[[], int]) -> None:
        self._path.set_function(lambda: 1.0 if on_sql() else 0.0)
        self._stranded.set_function(lambda: float(stranded()))
