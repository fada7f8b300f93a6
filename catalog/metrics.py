"""Prometheus metrics of the stock engine, the refills and the write-behind flusher."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from catalog.ledger import Level


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


# ReserveStock's answers: a reservation (a new one, or a retry answered with
# it), not enough stock, or a request refused as bad (a field, an unknown
# product, mixed currencies). UNAVAILABLE decides nothing and is not counted
# here (grpc_server_handled_total has it).
RESERVATION_OUTCOMES = ("reserved", "short", "invalid")


class StockMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reservations = Counter(
            "ordermesh_stock_reservations",
            "Reservations made, by the path that made them (redis or sql).",
            ["path"],
            registry=registry,
        )
        self.outcomes = Counter(
            "ordermesh_stock_reservation_outcomes",
            "ReserveStock answers by outcome: reserved (a reservation, a retry answered with it included), "
            "short (not enough stock: FAILED_PRECONDITION), invalid (a bad request: a field, an unknown product, "
            "mixed currencies).",
            ["outcome"],
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
        self._quota = Gauge(
            "ordermesh_stock_quota_units",
            "Units SQL has allocated to the current Redis, summed over products (allocated - stranded): on the "
            "counters, plus sales the flusher has not applied yet and refills in flight. From this replica's view "
            "of SQL, reloaded every second by its refiller; every replica reports it: aggregate with max.",
            registry=registry,
        )
        self._exhausted = Gauge(
            "ordermesh_stock_products_exhausted",
            "Products with no sellable unit left in Redis or SQL: SQL's stock minus stranded units is 0 (sold "
            "out once the flusher applied the last sale; stranded units are not sellable). Same view and "
            "aggregation as ordermesh_stock_quota_units.",
            registry=registry,
        )
        for path in ("redis", "sql"):
            self.reservations.labels(path)
        for outcome in RESERVATION_OUTCOMES:
            self.outcomes.labels(outcome)
        for trigger in ("background", "inline"):
            self.refills.labels(trigger)

    def watch(self, on_sql: Callable[[], bool], levels: Callable[[], Iterable[Level]]) -> None:
        """Gauges read at scrape time: the path, and totals over the quota's view of SQL levels."""
        self._path.set_function(lambda: 1.0 if on_sql() else 0.0)
        self._stranded.set_function(lambda: float(sum(level.stranded for level in levels())))
        self._quota.set_function(lambda: float(sum(level.allocated - level.stranded for level in levels())))
        self._exhausted.set_function(lambda: float(sum(1 for level in levels() if level.stock <= level.stranded)))
