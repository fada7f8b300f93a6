"""The order context's business metrics, in the process's registry.

Transitions are counted by the store's observer once their transaction has
committed: exactly once per change, whichever path made it (a consumer, a
periodic job, an RPC), and never for a duplicate or replayed event (the store
judges those and changes nothing). Labels are bounded classes, never an order,
user or product id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from mesh.worker import LoopWorker
from order.decisions import StatusChange
from order.lifecycle import MoneyAction
from order.orders import CancelReason, Order
from order.shards import Shards
from order.state import Status

log = logging.getLogger(__name__)

# The statuses an order waits in for something (payment, a reviewer, shipping):
# the ones worth a gauge. The others are either passing (PAID, SHIPPING) or final.
WAITING = (Status.PENDING, Status.AWAITING_REVIEW, Status.SHIP_FAILED)


class OrderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.placed_orders = Counter(
            "ordermesh_orders_placed",
            "Orders stored for the first time (an OrderPlaced delivered again is not counted).",
            registry=registry,
        )
        self.paid = Counter(
            "ordermesh_orders_paid",
            "Committed transitions into PAID (duplicate events not counted).",
            registry=registry,
        )
        self.cancelled = Counter(
            "ordermesh_orders_cancelled",
            "Committed transitions into CANCELLED, by reason class: declined (card declined), payment_timeout "
            "(nothing captured in the payment window), review_rejected, review_expired, ship_failed (shipping "
            "gave up), customer (CancelOrder), other.",
            ["reason"],
            registry=registry,
        )
        self.shipped = Counter(
            "ordermesh_orders_shipped",
            "Committed transitions into SHIPPED (duplicate events not counted).",
            registry=registry,
        )
        self.in_status = Gauge(
            "ordermesh_orders_in_status",
            "Orders in PENDING, AWAITING_REVIEW or SHIP_FAILED, over every shard, counted every "
            "STATUS_COUNT_INTERVAL_SECONDS by every replica: aggregate replicas with max, not sum.",
            ["status"],
            registry=registry,
        )
        self.money_actions = Counter(
            "ordermesh_money_actions",
            "Money reconciliation actions: compensate (the compensator refunded and released a CANCELLED order; "
            "again on a redelivery), refund_cancelled (the money sweep refunded a CANCELLED order still captured), "
            "refund_orphan (a capture whose order was never stored, refunded), sweep_stalled (a money sweep "
            "stopped because payment could not answer).",
            ["action"],
            registry=registry,
        )
        self.skipped = Counter(
            "ordermesh_order_job_skipped_orders",
            "Orders a periodic job skipped this round because their step failed (logged with the reason).",
            ["job"],
            registry=registry,
        )
        # Every series exists from the start, so dashboards and rate() see zeros, not gaps.
        for reason in CancelReason:
            self.cancelled.labels(reason.value)
        for status in WAITING:
            self.in_status.labels(status.value)
        for action in MoneyAction:
            self.money_actions.labels(action.value)

    # -- the store's observer ------------------------------------------------------

    def placed(self, orders: Sequence[Order]) -> None:
        self.placed_orders.inc(len(orders))

    def changed(self, changes: Sequence[StatusChange]) -> None:
        for change in changes:
            if change.after is Status.PAID:
                self.paid.inc()
            elif change.after is Status.SHIPPED:
                self.shipped.inc()
            elif change.after is Status.CANCELLED:
                self.cancelled.labels((change.cancel_reason or CancelReason.OTHER).value).inc()

    # -- the lifecycle's and the compensator's callbacks ----------------------------

    def money(self, action: MoneyAction) -> None:
        self.money_actions.labels(action.value).inc()

    def skip(self, job: str) -> None:
        self.skipped.labels(job).inc()


class StatusCounts(LoopWorker):
    """Sets ``ordermesh_orders_in_status`` from a COUNT per shard every interval.

    Every replica counts (no lease): a replica that lost a lease would otherwise
    keep reporting its last, stale count. The cost is one indexed GROUP BY per
    shard per replica per interval."""

    def __init__(self, shards: Shards, metrics: OrderMetrics, interval: float) -> None:
        super().__init__("order-status-counts")
        self._shards = shards
        self._metrics = metrics
        self._interval = interval
        self._wake = asyncio.Event()  # stop() does not wait for the rest of an interval

    async def count_once(self) -> dict[Status, int]:
        totals = dict.fromkeys(WAITING, 0)
        for store in self._shards.stores:
            for status, count in (await store.count_in(WAITING)).items():
                totals[status] += count
        for status, count in totals.items():
            self._metrics.in_status.labels(status.value).set(count)
        return totals

    async def run(self) -> None:
        failing = False
        while self.running:
            try:
                await self.count_once()
                failing = False
            except Exception as error:  # noqa: BLE001 - keeps the last counts; logged once per outage
                if not failing:
                    log.warning("order status counts: %s; keeping the last ones", error)
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def stop(self, grace: float = 10.0) -> None:
        self._wake.set()
        await super().stop(grace)
