"""The order lifecycle with a fake Remote and the real store on an in-process SQLite file.

The store stays real: the compare-and-set of a transition, the event-id
idempotency and the reconcile backoff are SQL queries (order/store.py), and a
hand-written store would have to re-implement exactly what is under test.
SQLite through aiosqlite runs inside this process (a thread, no server), on a
file under the test's tmp_path. Payment, shipping and catalog are a fake Remote
that keeps what it was asked; time is a clock the test moves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.order_ids import mint
from mesh.db import create_engine, create_schema
from mesh.errors import Unavailable
from mesh.money import Money
from order.events import status_changed
from order.lifecycle import Lifecycle, LifecycleConfig
from order.metrics import OrderMetrics
from order.models import metadata
from order.orders import Address, Applied, Item, Order, Transition
from order.remote import PaymentState, Remote
from order.shards import Shards
from order.state import Status
from order.store import OrderStore

T0 = datetime(2030, 1, 2, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, **since_t0: float) -> datetime:
        """Move to T0 + ``since_t0`` and return that time."""
        self.now = T0 + timedelta(**since_t0)
        return self.now


@dataclass
class FakeRemote(Remote):
    """Payment, shipping and catalog as the lifecycle sees them; down on demand."""

    payments: dict[str, PaymentState] = field(default_factory=dict)
    shipments: dict[str, str] = field(default_factory=dict)  # order id -> tracking id
    payment_down: bool = False
    shipping_down: bool = False
    payment_asked: list[str] = field(default_factory=list)
    shipment_asked: list[str] = field(default_factory=list)
    ship_calls: list[str] = field(default_factory=list)
    refunds: list[str] = field(default_factory=list)

    async def payment(self, order_id: str) -> PaymentState:
        self.payment_asked.append(order_id)
        if self.payment_down:
            raise Unavailable("payment is unavailable (UNAVAILABLE)")
        return self.payments.get(order_id, PaymentState("NONE"))

    async def refund(self, order_id: str, reason: str) -> None:
        self.refunds.append(order_id)

    async def captured(self, created_before: datetime, page_token: str, page_size: int) -> tuple[list[str], str]:
        return [], ""

    async def shipment(self, order_id: str) -> str | None:
        self.shipment_asked.append(order_id)
        if self.shipping_down:
            raise Unavailable("shipping is unavailable (UNAVAILABLE)")
        return self.shipments.get(order_id)

    async def release(self, order_id: str) -> None:
        return None

    async def ship(self, order: Order) -> str:
        self.ship_calls.append(order.order_id)
        if self.shipping_down:
            raise Unavailable("shipping is unavailable (UNAVAILABLE)")
        return self.shipments.setdefault(order.order_id, f"TRK-{len(self.shipments) + 1}")


class RacingStore(OrderStore):
    """The real store, with a hook run just before its next write: another
    replica's change landing between what a caller read and what it writes."""

    before_next_write: Callable[[], Awaitable[object]] | None = None

    async def apply_many(self, transitions: Sequence[Transition], now: datetime) -> list[tuple[Applied, Status | None]]:
        hook, self.before_next_write = self.before_next_write, None
        if hook is not None:
            await hook()
        return await super().apply_many(transitions, now)


@dataclass
class OrderWorld:
    clock: FakeClock
    store: RacingStore
    remote: FakeRemote
    lifecycle: Lifecycle
    skipped: list[str]

    async def place(self, status: Status = Status.PENDING) -> str:
        """An order as OrderPlaced stores it, created now."""
        order_id = mint("ada", 1)
        now = self.clock()
        order = Order(
            order_id=order_id,
            user_id="ada",
            request_id=f"r-{order_id}",
            status=status,
            items=(Item("sku-pen", 2, Money.of("USD", 24)),),
            total=Money.of("USD", 54),
            shipping_cost=Money.of("USD", 6),
            address=Address("1 Main St", "Springfield", "IL", "US", "62701"),
            email="ada@example.com",
            trace_id="",
            created_at=now,
            updated_at=now,
        )
        assert await self.store.insert([order], now) == {}
        return order_id

    async def move(self, order_id: str, target: Status, event: str) -> None:
        """Another path (a payment event, a claim) changes the order now."""
        result, _ = await self.store.apply(Transition(order_id, f"{order_id}:{event}", target, event), self.clock())
        assert result is Applied.APPLIED

    async def order(self, order_id: str) -> Order:
        found = await self.store.get(order_id)
        assert found is not None
        return found

    async def history(self, order_id: str) -> list[str]:
        return [change.status.value for change in (await self.order(order_id)).history]


@asynccontextmanager
async def order_world(
    directory: Path, config: LifecycleConfig, metrics: OrderMetrics | None = None
) -> AsyncIterator[OrderWorld]:
    """``metrics``, if given, counts what the store commits and what the money sweeps do."""
    engine = create_engine(f"sqlite+aiosqlite:///{directory / 'order-0.db'}")
    try:
        await create_schema(engine, metadata)
        clock, store, remote = FakeClock(), RacingStore(engine, status_changed, metrics), FakeRemote()
        skipped: list[str] = []  # the periodic jobs that skipped an order, once per skip
        on_money = metrics.money if metrics is not None else None
        lifecycle = Lifecycle(Shards([store]), remote, clock, config, on_skip=skipped.append, on_money=on_money)
        yield OrderWorld(clock, store, remote, lifecycle, skipped)
    finally:
        await engine.dispose()
