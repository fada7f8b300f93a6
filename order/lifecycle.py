"""What happens to orders after they are placed: cancel, review, reconcile,
expire, ship, recover.

Every status change goes through the store's exactly-once ``apply`` with an
event id derived from the order and the step, so a repeat (a retry, a second
replica, a redelivered event) is absorbed. Refunds and stock releases are not
done here: every CANCELLED order is compensated by the ``Compensator``
consumer, whichever path cancelled it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from opentelemetry import trace
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode

from mesh.clock import Clock
from mesh.errors import FailedPrecondition, NotFound, Unavailable
from mesh.paging import decode_position, encode_position
from order.orders import Applied, CancelReason, Order, Transition
from order.ports import Gateway
from order.shards import Shards
from order.spans import OrderSpans
from order.state import Status, allowed
from order.store import OrderStore

log = logging.getLogger(__name__)
# The money sweeps' marks (OrderStore.mark).
CANCELLED_SWEEP = "cancelled"
CAPTURES_SWEEP = "captures"


class MoneyAction(StrEnum):
    """What the money paths did, as a bounded class (a metric label)."""

    # The compensator refunded whatever was captured and released the stock of a
    # CANCELLED order (a redelivered status event compensates, and counts, again).
    COMPENSATE = "compensate"
    # The money sweep found a CANCELLED order still captured (the compensator missed it): refunded.
    REFUND_CANCELLED = "refund_cancelled"
    # The orphan sweep found a capture whose order was never stored: refunded.
    REFUND_ORPHAN = "refund_orphan"
    # A money sweep stopped its walk because payment could not answer (it goes on from there next tick).
    SWEEP_STALLED = "sweep_stalled"


@dataclass(frozen=True)
class LifecycleConfig:
    # A PENDING order is checked against payment after this long ...
    reconcile_after: timedelta = timedelta(seconds=10)
    # ... again after a backoff doubling from reconcile_after up to this ...
    reconcile_backoff_max: timedelta = timedelta(minutes=2)
    # ... and cancelled if nothing was charged within this long.
    payment_window: timedelta = timedelta(minutes=30)
    review_timeout: timedelta = timedelta(minutes=30)
    ship_max_attempts: int = 5
    ship_backoff: timedelta = timedelta(seconds=5)
    ship_backoff_max: timedelta = timedelta(minutes=5)
    # The money sweep looks at a CANCELLED order this long after its cancel
    # (the compensator refunds it first; the sweep catches what it missed).
    money_settle_after: timedelta = timedelta(minutes=1)
    # A capture whose order is still not stored this long after the charge never
    # will be (an OrderPlaced arrives in seconds; a lost one is replayed sooner).
    orphan_after: timedelta = timedelta(minutes=31)
    # A SHIPPING claim older than this belongs to a replica that died while shipping.
    ship_claim_timeout: timedelta = timedelta(minutes=2)
    batch: int = 100
    ship_concurrency: int = 16


class Lifecycle:
    def __init__(
        self,
        shards: Shards,
        remote: Gateway,
        clock: Clock,
        config: LifecycleConfig = LifecycleConfig(),
        *,
        on_skip: Callable[[str], None] | None = None,
        on_money: Callable[[MoneyAction], None] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._shards = shards
        self._remote = remote
        self._clock = clock
        self._config = config
        # Called with the job's name each time a periodic job skips an order that failed.
        self._on_skip = on_skip
        # Called with what a money sweep did: each refund, each walk stopped by payment.
        self._on_money = on_money
        self._ship_slots = asyncio.Semaphore(config.ship_concurrency)
        # A span per order a job or the dispatcher acts on, linked to the order's trace.
        self._spans = OrderSpans(tracer or trace.NoOpTracer(), shards)

    async def _load(self, order_id: str) -> tuple[OrderStore, Order]:
        store = self._shards.for_order(order_id)
        order = await store.get(order_id) if store is not None else None
        if store is None or order is None:
            raise NotFound("order", order_id)
        return store, order

    async def _apply(self, store: OrderStore, transition: Transition) -> Applied:
        result, before = await store.apply(transition, self._clock())
        if result is Applied.ILLEGAL:
            log.info("order %s: %s not applied from %s", transition.order_id, transition.target, before)
        return result

    # -- people ---------------------------------------------------------------------

    async def cancel(self, order_id: str, reason: str) -> Order:
        store, order = await self._load(order_id)
        if not allowed(order.status, Status.CANCELLED):  # shipped, cancelled, or fulfilment claimed
            raise FailedPrecondition(f"order {order_id} is {order.status} and can no longer be cancelled")
        if order.status is Status.SHIP_FAILED and (tracking := await self._remote.shipment(order_id)) is not None:
            # The failed call shipped after all (its reply was lost): the goods
            # left, so no refund; recover-shipping records SHIPPED on its next try.
            raise FailedPrecondition(f"order {order_id} was shipped ({tracking}) and can no longer be cancelled")
        reason = reason or "cancelled by the customer"
        # A compare-and-set on the status read: a claim for shipping that lands
        # first makes this illegal, so an order is never both shipped and cancelled.
        change = Transition(
            order_id,
            f"{order_id}:cancel",
            Status.CANCELLED,
            reason,
            failure_reason=reason,
            only_from=frozenset({order.status}),
            cancel_reason=CancelReason.CUSTOMER,
        )
        if await self._apply(store, change) is Applied.ILLEGAL:
            raise FailedPrecondition(f"order {order_id} changed meanwhile and can no longer be cancelled")
        return (await self._load(order_id))[1]

    async def review(self, order_id: str, approve: bool, reviewer: str, note: str) -> Order:
        store, order = await self._load(order_id)
        if order.status is not Status.AWAITING_REVIEW:
            raise FailedPrecondition(f"order {order_id} is {order.status}, not AWAITING_REVIEW")
        if not approve:
            reason = f"rejected by {reviewer}" + (f": {note}" if note else "")
            change = Transition(
                order_id,
                f"{order_id}:review",
                Status.CANCELLED,
                reason,
                failure_reason=reason,
                cancel_reason=CancelReason.REVIEW_REJECTED,
            )
            await self._apply(store, change)
            return (await self._load(order_id))[1]
        await self._apply(store, Transition(order_id, f"{order_id}:review", Status.PENDING, f"approved by {reviewer}"))
        # The charge was made at checkout: settle it now. The approval stands
        # either way: if payment cannot answer, the order is PENDING and
        # reconcile settles it (under its own event id) once payment answers.
        try:
            await self._settle_payment(store, order_id, "-after-review")
        except Unavailable as error:
            log.warning("order %s approved; its payment is settled later: %s", order_id, error)
        return (await self._load(order_id))[1]

    async def _settle_payment(self, store: OrderStore, order_id: str, suffix: str = "") -> bool:
        """PAID or CANCELLED from what payment says; True if the order changed now."""
        state = await self._remote.payment(order_id)
        if state.status == "CAPTURED":
            paid = Transition(order_id, f"{order_id}:payment{suffix}", Status.PAID, "payment captured")
            return await self._apply(store, paid) is Applied.APPLIED
        if state.status == "DECLINED":
            reason = state.decline_reason or "payment declined"
            declined = Transition(
                order_id,
                f"{order_id}:payment{suffix}",
                Status.CANCELLED,
                reason,
                failure_reason=reason,
                cancel_reason=CancelReason.DECLINED,
            )
            return await self._apply(store, declined) is Applied.APPLIED
        return False

    # -- periodic workers -------------------------------------------------------------

    async def _each(self, job: str, order_id: str, work: Awaitable[bool]) -> bool:
        """One order's step of a periodic job, in its span. A failure is logged,
        counted and skipped: one bad order never stops the job for the others."""
        async with self._spans.around(job, order_id) as span:
            try:
                return await work
            except Unavailable as error:
                log.warning("%s %s: %s", job, order_id, error)
            except Exception:
                log.exception("%s %s: unexpected error; skipped this round", job, order_id)
            span.set_status(SpanStatus(StatusCode.ERROR, "skipped"))
        if self._on_skip is not None:
            self._on_skip(job)
        return False

    async def reconcile(self, now: datetime) -> int:
        """PENDING orders whose payment outcome was unknown: ask payment. An order
        payment has nothing final for is asked again after a capped exponential
        backoff (and at the end of its payment window, to expire it on time)."""
        done = 0
        for store in self._shards.stores:
            due = await store.reconcile_due(now - self._config.reconcile_after, now, self._config.batch)
            for order, checks in due:
                done += await self._each("reconcile", order.order_id, self._reconcile_one(store, order, checks, now))
        return done

    async def _reconcile_one(self, store: OrderStore, order: Order, checks: int, now: datetime) -> bool:
        # Its own event id: checkout's PaymentCaptured (":payment") may have been
        # judged already (illegal while the order awaited review), and reusing it
        # would be a duplicate that changes nothing, for ever.
        if await self._settle_payment(store, order.order_id, "-reconciled"):
            return True
        expires = order.created_at + self._config.payment_window
        if expires > now:
            wait = min(self._config.reconcile_after * 2**checks, self._config.reconcile_backoff_max)
            await store.postpone_check(order.order_id, checks + 1, min(now + wait, expires))
            return False
        # Its own event id: "expired" is the review timeout's, and an order
        # approved after review must still be able to expire here.
        cancel = _cancellation(
            order.order_id, "payment-expired", "payment not received in time", CancelReason.PAYMENT_TIMEOUT
        )
        return await self._apply(store, cancel) is Applied.APPLIED

    async def settle_money(self, now: datetime) -> int:
        """The money sweep: every CANCELLED order, once, some time after its cancel,
        is checked with payment; a capture still there is refunded. It walks each
        shard in (updated_at, order id) order from where it stopped; a payment
        outage stops the walk there (never skips an order), to go on next time."""
        refunded = 0
        for store in self._shards.stores:
            mark = decode_position(await store.mark(CANCELLED_SWEEP))
            for order in await store.cancelled_after(mark, now - self._config.money_settle_after, self._config.batch):
                try:
                    async with self._spans.around("money", order.order_id):
                        if (await self._remote.payment(order.order_id)).status == "CAPTURED":
                            log.warning("money sweep: %s is CANCELLED and still captured: refunding", order.order_id)
                            await self._remote.refund(order.order_id, "order cancelled (money reconciliation)")
                            self._money(MoneyAction.REFUND_CANCELLED)
                            refunded += 1
                except Unavailable as error:
                    log.warning("money sweep stops at %s until payment answers: %s", order.order_id, error)
                    self._money(MoneyAction.SWEEP_STALLED)
                    break
                await store.set_mark(CANCELLED_SWEEP, encode_position(order.updated_at, order.order_id))
        return refunded

    async def refund_orphans(self, now: datetime) -> int:
        """The money sweep's second walk: captured payments whose order was never
        stored (its OrderPlaced lost or dead-lettered, or a charge made by hand)
        once ``orphan_after`` has passed since the charge are refunded. It walks
        payment's captures oldest first, a page per run, from where it stopped
        (kept on the first shard): each capture is looked at once."""
        marks = self._shards.stores[0]
        try:
            order_ids, resume = await self._remote.captured(
                now - self._config.orphan_after, await marks.mark(CAPTURES_SWEEP), self._config.batch
            )
        except Unavailable as error:
            log.warning("money sweep: payment cannot list captures now: %s", error)
            self._money(MoneyAction.SWEEP_STALLED)
            return 0
        refunded = 0
        for order_id in order_ids:
            try:
                store = self._shards.for_order(order_id)
                if store is not None and await store.get(order_id) is not None:
                    continue
                # No order was stored, so no trace to link to.
                async with self._spans.around("money-orphans", order_id, parent=""):
                    log.warning("money sweep: %s was captured and no order was ever stored: refunding", order_id)
                    await self._remote.refund(order_id, "no order was stored for this payment (money reconciliation)")
                    self._money(MoneyAction.REFUND_ORPHAN)
            except Unavailable as error:
                log.warning("money sweep stops at %s until payment answers: %s", order_id, error)
                self._money(MoneyAction.SWEEP_STALLED)
                return refunded
            refunded += 1
        if resume:
            await marks.set_mark(CAPTURES_SWEEP, resume)
        return refunded

    def _money(self, action: MoneyAction) -> None:
        if self._on_money is not None:
            self._on_money(action)

    async def expire(self, now: datetime) -> int:
        """AWAITING_REVIEW orders nobody reviewed in time are cancelled."""
        done = 0
        for store in self._shards.stores:
            for order in await store.in_status(
                Status.AWAITING_REVIEW, now - self._config.review_timeout, self._config.batch
            ):
                done += await self._each("expire", order.order_id, self._expire_one(store, order))
        return done

    async def _expire_one(self, store: OrderStore, order: Order) -> bool:
        return (
            await self._apply(
                store, _cancellation(order.order_id, "expired", "review expired", CancelReason.REVIEW_EXPIRED)
            )
            is Applied.APPLIED
        )

    async def ship_many(self, order_ids: Sequence[str]) -> dict[str, Exception]:
        """Ship PAID orders. Per shard: the orders are read together; fulfilment is
        claimed (PAID -> SHIPPING) in one transaction, so a cancel that came first
        wins and nothing ships, and one that comes later is refused; the claimed
        orders are shipped concurrently (bounded); SHIPPED or SHIP_FAILED is applied
        in one transaction. Returns why an order could not be handled; an order no
        longer PAID (claimed, shipped or cancelled meanwhile) is skipped."""
        groups, unrouted = self._shards.group(order_ids, lambda order_id: (order_id, ""))
        failures: dict[str, Exception] = {i: NotFound("order", i) for i in unrouted}
        for store, ids in groups.items():
            found = await store.get_many(ids)
            failures.update({i: NotFound("order", i) for i in ids if i not in found})
            paid = [found[i] for i in ids if i in found and found[i].status is Status.PAID]
            failures.update((await self._ship_claimed(store, await self._claim(store, paid)))[1])
        return failures

    async def _ship_claimed(self, store: OrderStore, claimed: Sequence[Order]) -> tuple[int, dict[str, Exception]]:
        """Ship claimed (SHIPPING) orders concurrently, bounded by the ship slots,
        and apply SHIPPED or SHIP_FAILED in one transaction. Returns how many were
        shipped and why the others could not be handled."""
        parents = await self._spans.parents(store, [order.order_id for order in claimed])
        shipped = await asyncio.gather(
            *(self._ship_in_span(order, parents.get(order.order_id, "")) for order in claimed),
            return_exceptions=True,
        )
        transitions: list[Transition] = []
        failures: dict[str, Exception] = {}
        for order, outcome in zip(claimed, shipped, strict=True):
            if isinstance(outcome, Transition):
                transitions.append(outcome)
            elif isinstance(outcome, Exception):
                failures[order.order_id] = outcome
            else:
                raise outcome  # cancelled
        results = await store.apply_many(transitions, self._clock()) if transitions else []
        done = 0
        for change, (result, before) in zip(transitions, results, strict=True):
            if result is Applied.ILLEGAL:
                log.info("order %s: %s not applied from %s", change.order_id, change.target, before)
            done += result is Applied.APPLIED and change.target is Status.SHIPPED
        return done, failures

    async def _claim(self, store: OrderStore, orders: Sequence[Order]) -> list[Order]:
        """PAID or SHIP_FAILED -> SHIPPING, as a compare-and-set on the status read;
        the orders whose claim applied (and only they) may be shipped now."""
        claims = [
            Transition(
                o.order_id,
                f"{o.order_id}:shipping-{o.ship_attempts}",
                Status.SHIPPING,
                "fulfilment claimed",
                only_from=frozenset({o.status}),
            )
            for o in orders
        ]
        results = await store.apply_many(claims, self._clock()) if claims else []
        return [o for o, (result, _) in zip(orders, results, strict=True) if result is Applied.APPLIED]

    async def _ship_in_span(self, order: Order, parent: str) -> Transition:
        async with self._spans.around("ship", order.order_id, parent):
            return await self._ship(order)

    async def _ship(self, order: Order) -> Transition:
        """ShipOrder for a claimed (SHIPPING) order: SHIPPED, or SHIP_FAILED (attempt n+1)."""
        async with self._ship_slots:
            try:
                tracking_id = await self._remote.ship(order)
            except Unavailable as error:
                reason = f"shipping failed: {error}"
                event_id = f"{order.order_id}:ship-failed-{order.ship_attempts + 1}"
                return Transition(order.order_id, event_id, Status.SHIP_FAILED, reason, failure_reason=reason)
        order_id = order.order_id
        return Transition(order_id, f"{order_id}:shipped", Status.SHIPPED, "shipped", tracking_id=tracking_id)

    async def recover(self, now: datetime) -> int:
        """Fulfilment that did not finish:

        - SHIP_FAILED orders are claimed and shipped again with backoff; after the
          maximum, shipping is asked whether a shipment exists (a reply lost on the
          way) before giving up and cancelling;
        - SHIPPING orders whose claim is older than ``ship_claim_timeout`` (the
          replica shipping them died) are shipped again: ShipOrder is idempotent
          per order, so a shipment that was made is answered, not made twice.

        The orders due are claimed together, shipped concurrently and their
        outcomes applied together, as the dispatcher does: one at a time, a 60 s
        shipping outage under 110 orders/s (the soak) left a backlog that took
        longer than ten minutes to ship.
        """
        done = 0
        for store in self._shards.stores:
            again: list[Order] = []
            for order in await store.in_status(Status.SHIP_FAILED, now, self._config.batch):
                if order.ship_attempts >= self._config.ship_max_attempts:
                    done += await self._each("recover-shipping", order.order_id, self._give_up(store, order))
                elif order.updated_at + self._ship_backoff(order) <= now:
                    again.append(order)
            stale = now - self._config.ship_claim_timeout
            # A stale SHIPPING claim is shipped again as it is: it is claimed already.
            for claimed in (
                await self._claim(store, again),
                await store.in_status(Status.SHIPPING, stale, self._config.batch),
            ):
                shipped, failures = await self._ship_claimed(store, claimed)
                done += shipped
                for order_id, error in failures.items():
                    log.warning("recover-shipping %s: %s", order_id, error)
                    if self._on_skip is not None:
                        self._on_skip("recover-shipping")
        return done

    def _ship_backoff(self, order: Order) -> timedelta:
        doubling: int = 2 ** max(order.ship_attempts - 1, 0)
        return min(self._config.ship_backoff * doubling, self._config.ship_backoff_max)

    async def _give_up(self, store: OrderStore, order: Order) -> bool:
        """Out of attempts: cancel, unless shipping has a shipment after all (a reply
        lost on the way), which is claimed and shipped again (answered, not made twice)."""
        if await self._remote.shipment(order.order_id) is None:
            reason = f"shipping failed {order.ship_attempts} times"
            await self._apply(store, _cancellation(order.order_id, "ship-gave-up", reason, CancelReason.SHIP_FAILED))
            return True
        return (await self._ship_claimed(store, await self._claim(store, [order])))[0] > 0


def _cancellation(order_id: str, cause: str, reason: str, cancel_reason: CancelReason) -> Transition:
    """A periodic job's CANCELLED, identified by its cause: applied once per order."""
    return Transition(
        order_id, f"{order_id}:{cause}", Status.CANCELLED, reason, failure_reason=reason, cancel_reason=cancel_reason
    )
