"""The order context on real Redis and real SQL with two shards: events in, rows out."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from common.order_ids import mint, shard_of_user
from mesh.bus import encode_fields
from mesh.bus.redis_streams import StreamConsumer
from mesh.clock import utc_now
from mesh.errors import FailedPrecondition
from mesh.lease import Lease
from mesh.local.procs import MariaDBServer, RedisServer
from order.bootstrap import Components, bootstrap, build_consumers, components
from order.lifecycle import Lifecycle, LifecycleConfig
from order.orders import Applied, Order, Transition
from order.relay import OutboxRelay
from order.remote import PaymentState, Remote
from order.settings import OrderSettings
from order.state import Status
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2
from ordermesh.order.v1 import order_pb2, order_pb2_grpc
from tests.support import serving

FAST = dict(consumer_batch_size=50, consumer_max_attempts=3, consumer_claim_idle_ms=100)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def shard_urls(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return ",".join(f"sqlite+aiosqlite:///{tmp_path / f'order-{n}.db'}" for n in range(2))
    server: MariaDBServer = request.getfixturevalue("mariadb_server")
    names = [f"o_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        server.create_database(name)
    return ",".join(server.url(name) for name in names)


@dataclass
class Pipeline:
    settings: OrderSettings
    parts: Components
    stub: order_pb2_grpc.OrderServiceAsyncStub
    consumers: list[StreamConsumer]

    async def send(self, stream: str, envelope: events_pb2.Envelope) -> None:
        await self.parts.publisher.publish(stream, encode_fields(envelope))

    async def placed(self, envelope: events_pb2.Envelope) -> None:
        await self.send(self.settings.order_placed_stream, envelope)

    async def update(self, envelope: events_pb2.Envelope) -> None:
        await self.send(self.settings.order_updates_stream, envelope)

    async def drain(self) -> None:
        """Consume both streams until nothing is left (placed first, then updates, twice for deferrals)."""
        for _ in range(2):
            for consumer in self.consumers:
                await consumer.run_until_idle()

    async def get(self, order_id: str) -> order_pb2.Order:
        return await self.stub.GetOrder(order_pb2.GetOrderRequest(order_id=order_id))


@pytest.fixture
async def pipeline(shard_urls: str, redis_server: RedisServer) -> AsyncIterator[Pipeline]:
    prefix = uuid.uuid4().hex[:8]
    settings = OrderSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        database_urls=shard_urls,
        redis_url=redis_server.url,
        order_placed_stream=f"{prefix}:placed",
        order_updates_stream=f"{prefix}:updates",
        order_status_stream=f"{prefix}:status",
        **FAST,  # type: ignore[arg-type]
    )
    app = await bootstrap(settings, workers=False)  # the test drives consumers itself, deterministically
    parts = components(app)
    consumers = build_consumers(parts, settings, app.tracer)[:2]  # OrderPlaced and status events only
    async with serving(app) as (_server, channel):
        yield Pipeline(settings, parts, order_pb2_grpc.OrderServiceStub(channel), consumers)


def usd(units: int, nanos: int = 0) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", units=units, nanos=nanos)


def order_placed(
    order_id: str, user_id: str, *, at: datetime | None = None, review: bool = False
) -> events_pb2.Envelope:
    occurred = Timestamp()
    occurred.FromDatetime(at or datetime.now(UTC))
    return events_pb2.Envelope(
        event_id=uuid.uuid4().hex,
        order_id=order_id,
        occurred_at=occurred,
        trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        order_placed=events_pb2.OrderPlaced(
            draft=common_pb2.OrderDraft(
                request_id=f"r-{order_id}",
                user_id=user_id,
                address=common_pb2.Address(
                    street_address="1 Main St", city="Springfield", country="US", zip_code="62701"
                ),
                email="ada@example.com",
                shipping_cost=usd(5, 990_000_000),
                initial_status=common_pb2.AWAITING_REVIEW if review else common_pb2.PENDING,
            ),
            items=[
                common_pb2.OrderItem(product_id="sku-1001", quantity=2, unit_price=usd(67, 990_000_000)),
                common_pb2.OrderItem(product_id="sku-1004", quantity=1, unit_price=usd(24)),
            ],
            total=usd(165, 970_000_000),
        ),
    )


def event(order_id: str, event_id: str | None = None, **payload: Any) -> events_pb2.Envelope:
    return events_pb2.Envelope(event_id=event_id or uuid.uuid4().hex, order_id=order_id, **payload)


def statuses(order: order_pb2.Order) -> list[str]:
    return [common_pb2.OrderStatus.Name(change.status) for change in order.history]


async def test_orders_keep_every_field_and_land_on_their_users_shard(pipeline: Pipeline) -> None:
    created = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    users = [f"user-{n}" for n in range(6)]
    ids = {user: mint(user, 2) for user in users}
    assert {shard_of_user(u, 2) for u in users} == {0, 1}, "the users should cover both shards"
    for user, order_id in ids.items():
        await pipeline.placed(order_placed(order_id, user, at=created))
    await pipeline.placed(order_placed(ids["user-0"], "user-0", at=created))  # a duplicate delivery
    await pipeline.drain()

    order = await pipeline.get(ids["user-0"])
    assert order.status == common_pb2.PENDING
    assert (order.address.city, order.email, order.trace_id) == (
        "Springfield",
        "ada@example.com",
        "0af7651916cd43dd8448eb211c80319c",
    )
    assert [(i.product_id, i.quantity, i.unit_price.units, i.unit_price.nanos) for i in order.items] == [
        ("sku-1001", 2, 67, 990_000_000),
        ("sku-1004", 1, 24, 0),
    ]
    assert (order.total.units, order.total.nanos, order.shipping_cost.units) == (165, 970_000_000, 5)
    assert order.created_at.ToDatetime(tzinfo=UTC) == created
    for user, order_id in ids.items():
        store = pipeline.parts.shards.stores[shard_of_user(user, 2)]
        assert await store.get(order_id) is not None
        other = pipeline.parts.shards.stores[1 - shard_of_user(user, 2)]
        assert await other.get(order_id) is None


async def test_list_orders_is_newest_first_and_paged(pipeline: Pipeline) -> None:
    ids = []
    for n in range(5):
        order_id = mint("pager", 2)
        ids.append(order_id)
        await pipeline.placed(order_placed(order_id, "pager", at=datetime(2026, 11, 1, 12, n, tzinfo=UTC)))
    await pipeline.drain()
    seen: list[str] = []
    token = ""
    while True:
        page = await pipeline.stub.ListOrders(
            order_pb2.ListOrdersRequest(user_id="pager", page_size=2, page_token=token)
        )
        seen += [o.order_id for o in page.orders]
        if not (token := page.next_page_token):
            break
    assert seen == list(reversed(ids))


async def test_events_out_of_order_and_twice_apply_once(pipeline: Pipeline) -> None:
    order_id = mint("ooo", 2)
    captured = event(order_id, "evt-captured", payment_captured=events_pb2.PaymentCaptured(transaction_id="t1"))
    await pipeline.update(captured)  # before the order exists: deferred, not dropped
    await pipeline.update(captured)  # and delivered twice
    await pipeline.consumers[1].run_until_idle()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await pipeline.get(order_id)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    await pipeline.placed(order_placed(order_id, "ooo"))
    await pipeline.drain()
    order = await pipeline.get(order_id)
    assert order.status == common_pb2.PAID
    assert statuses(order) == ["PENDING", "PAID"]

    # A late decline must not cancel a PAID order; an illegal event is ignored.
    await pipeline.update(event(order_id, payment_declined=events_pb2.PaymentDeclined(reason="card declined")))
    await pipeline.update(event(order_id, order_reviewed=events_pb2.OrderReviewed(approved=True, reviewer="bob")))
    await pipeline.drain()
    order = await pipeline.get(order_id)
    assert order.status == common_pb2.PAID and statuses(order) == ["PENDING", "PAID"]


async def test_a_batch_of_status_events_is_applied_in_one_transaction_with_each_outcome(pipeline: Pipeline) -> None:
    paid, missing, retried = mint("bat", 2), mint("bat", 2), mint("bat", 2)
    await pipeline.placed(order_placed(paid, "bat"))
    await pipeline.placed(order_placed(retried, "bat"))
    await pipeline.drain()
    store = pipeline.parts.shards.for_order(paid)
    assert store is not None
    now = datetime.now(UTC)
    to_paid = Transition(paid, "bat-paid", Status.PAID, "captured")
    results = await store.apply_many(
        [
            to_paid,
            to_paid,  # delivered twice in one batch
            Transition(missing, "bat-missing", Status.PAID, "captured"),
            Transition(paid, "bat-review", Status.PAID, "approved", only_from=frozenset({Status.AWAITING_REVIEW})),
            Transition(paid, "bat-claimed", Status.SHIPPING, "claimed"),
            Transition(paid, "bat-shipped", Status.SHIPPED, "shipped", tracking_id="TRK-1"),
            # Another order's row changes different columns on each step.
            Transition(retried, "ret-paid", Status.PAID, "captured"),
            Transition(retried, "ret-claimed", Status.SHIPPING, "claimed"),
            Transition(retried, "ret-failed", Status.SHIP_FAILED, "ship failed", failure_reason="shipping down"),
            Transition(retried, "ret-reclaimed", Status.SHIPPING, "claimed again"),
            Transition(retried, "ret-shipped", Status.SHIPPED, "shipped", tracking_id="TRK-2"),
        ],
        now,
    )
    assert [r for r, _ in results] == [
        Applied.APPLIED,
        Applied.DUPLICATE,
        Applied.MISSING,
        Applied.ILLEGAL,
        *[Applied.APPLIED] * 7,
    ]
    assert [before for _, before in results][-5:] == [
        Status.PENDING,
        Status.PAID,
        Status.SHIPPING,
        Status.SHIP_FAILED,
        Status.SHIPPING,
    ]
    order = await pipeline.get(paid)
    assert statuses(order) == ["PENDING", "PAID", "SHIPPING", "SHIPPED"] and order.tracking_id == "TRK-1"
    row = await store.get(retried)
    assert row is not None
    assert statuses(await pipeline.get(retried)) == [
        "PENDING",
        "PAID",
        "SHIPPING",
        "SHIP_FAILED",
        "SHIPPING",
        "SHIPPED",
    ]
    assert (row.status, row.tracking_id, row.failure_reason, row.ship_attempts) == (
        Status.SHIPPED,
        "TRK-2",
        "shipping down",
        1,
    )


async def test_concurrent_batches_of_the_same_events_apply_each_once(pipeline: Pipeline) -> None:
    """On MariaDB the losers of the race hit the applied-events key and fall back
    to one by one; on SQLite writers queue. Either way: each event once."""
    ids = [mint("race", 2) for _ in range(8)]
    for order_id in ids:
        await pipeline.placed(order_placed(order_id, "race"))
    await pipeline.drain()
    store = pipeline.parts.shards.for_order(ids[0])
    assert store is not None
    batch = [Transition(o, f"race-{o}", Status.PAID, "captured") for o in ids]
    outcomes = await asyncio.gather(*(store.apply_many(batch, datetime.now(UTC)) for _ in range(4)))
    for n in range(len(ids)):
        assert sorted(outcome[n][0] for outcome in outcomes) == sorted([Applied.APPLIED] + [Applied.DUPLICATE] * 3)
    for order_id in ids:
        assert statuses(await pipeline.get(order_id)) == ["PENDING", "PAID"]


async def test_review_and_decline_paths(pipeline: Pipeline) -> None:
    reviewed, declined = mint("rev", 2), mint("dec", 2)
    await pipeline.placed(order_placed(reviewed, "rev", review=True))
    await pipeline.placed(order_placed(declined, "dec"))
    await pipeline.drain()
    await pipeline.update(
        event(reviewed, order_reviewed=events_pb2.OrderReviewed(approved=False, reviewer="eve", note="fraud"))
    )
    await pipeline.update(event(declined, payment_declined=events_pb2.PaymentDeclined(reason="card declined")))
    await pipeline.drain()
    first, second = await pipeline.get(reviewed), await pipeline.get(declined)
    assert statuses(first) == ["AWAITING_REVIEW", "CANCELLED"]
    assert first.failure_reason == "rejected by eve: fraud"
    assert statuses(second) == ["PENDING", "CANCELLED"] and second.failure_reason == "card declined"


async def test_poison_event_is_dead_lettered_then_replayed(pipeline: Pipeline) -> None:
    good = mint("p", 2)
    await pipeline.placed(order_placed(good, "p"))
    bad = order_placed(mint("q", 2), "")  # no user: can never be inserted
    await pipeline.placed(bad)
    await pipeline.drain()
    assert (await pipeline.get(good)).status == common_pb2.PENDING
    dead = pipeline.parts.dead_letters()
    [letter] = await dead.pending()
    assert letter.attempts == 3 and "lacks user" in letter.reason
    # The operator's command: list, then replay.
    env = {
        **os.environ,
        "DATABASE_URLS": pipeline.settings.database_urls,
        "REDIS_URL": pipeline.settings.redis_url,
    }

    async def command(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "order", *args, env=env, stdout=asyncio.subprocess.PIPE
        )
        output = (await process.communicate())[0].decode()
        return int(process.returncode or 0), output

    _, listing = await command("dead-letters")
    assert f"{letter.id}\t{pipeline.settings.order_placed_stream}\tOrderPlaced" in listing
    code, replayed = await command("replay", str(letter.id))
    assert code == 0 and "replayed 1 dead letters" in replayed
    await pipeline.drain()
    assert len(await dead.pending()) == 1, "replayed, failed again, dead-lettered again: still visible"


async def test_every_transition_is_relayed_as_order_status_changed(pipeline: Pipeline) -> None:
    order_id = mint("relay", 2)
    await pipeline.placed(order_placed(order_id, "relay"))
    await pipeline.drain()
    await pipeline.update(event(order_id, payment_captured=events_pb2.PaymentCaptured(transaction_id="t")))
    await pipeline.drain()
    relay = OutboxRelay(pipeline.parts.shards, pipeline.parts.publisher, pipeline.settings.order_status_stream,
                        Lease(pipeline.parts.client, f"relay-{uuid.uuid4().hex}", 5000))  # fmt: skip
    assert await relay.relay_once() == 2
    assert await relay.relay_once() == 0
    entries: Any = await pipeline.parts.client.xrange(pipeline.settings.order_status_stream)
    changes = [events_pb2.Envelope.FromString(fields[b"event"]).order_status_changed for _id, fields in entries]
    assert [(c.from_status, c.to_status) for c in changes] == [
        (common_pb2.ORDER_STATUS_UNSPECIFIED, common_pb2.PENDING),
        (common_pb2.PENDING, common_pb2.PAID),
    ]


async def test_one_order_that_does_not_fit_is_refused_alone_and_the_batch_lands(pipeline: Pipeline) -> None:
    """100 OrderPlaced in one batch: one with a street longer than its column,
    one in a non-Latin script. The second is stored intact (full Unicode); the
    first is refused alone on MariaDB (SQLite does not enforce VARCHAR sizes)
    and dead-lettered with its reason; the other 99 land with it."""
    ids = [mint(f"user-{n}", 2) for n in range(100)]
    for n, order_id in enumerate(ids):
        envelope = order_placed(order_id, f"user-{n}")
        if n == 10:
            envelope.order_placed.draft.address.street_address = "x" * 300
        if n == 20:
            envelope.order_placed.draft.address.street_address = "東京都千代田区千代田1-1"
            envelope.order_placed.draft.address.city = "Москва"
        await pipeline.placed(envelope)
    await pipeline.drain()
    stored = await pipeline.get(ids[20])
    assert (stored.address.street_address, stored.address.city) == ("東京都千代田区千代田1-1", "Москва")
    for order_id in ids[:10] + ids[11:]:
        assert (await pipeline.get(order_id)).status == common_pb2.PENDING
    letters = await pipeline.parts.dead_letters().pending()
    if "mysql" in pipeline.settings.database_urls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pipeline.get(ids[10])
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        [letter] = letters
        assert letter.order_id == ids[10] and "cannot be stored" in letter.reason and "street_address" in letter.reason
    else:
        assert letters == [] and (await pipeline.get(ids[10])).status == common_pb2.PENDING


class PaymentsWithOneBroken:
    """Payment as reconcile sees it: the oldest order's lookup fails with a bug, the others answer."""

    def __init__(self, broken: str) -> None:
        self.broken = broken

    async def payment(self, order_id: str) -> PaymentState:
        if order_id == self.broken:
            raise RuntimeError("a bug in one order's path")
        return PaymentState("CAPTURED", f"txn-{order_id}")


async def test_one_failing_order_does_not_stop_a_periodic_job_for_the_others(pipeline: Pipeline) -> None:
    old = datetime.now(UTC) - timedelta(minutes=5)
    ids = [mint(f"slow-{n}", 2) for n in range(3)]
    for n, order_id in enumerate(ids):
        await pipeline.placed(order_placed(order_id, f"slow-{n}", at=old + timedelta(seconds=n)))
    await pipeline.drain()
    skipped: list[str] = []
    lifecycle = Lifecycle(
        pipeline.parts.shards,
        cast(Remote, PaymentsWithOneBroken(ids[0])),
        utc_now,
        LifecycleConfig(reconcile_after=timedelta(seconds=1)),
        on_skip=skipped.append,
    )
    assert await lifecycle.reconcile(datetime.now(UTC)) == 2
    assert skipped == ["reconcile"]
    assert [(await pipeline.get(i)).status for i in ids] == [common_pb2.PENDING, common_pb2.PAID, common_pb2.PAID]


class RecordingShipping:
    """ShipOrder as the dispatcher sees it: records every shipment it makes."""

    def __init__(self) -> None:
        self.shipped: set[str] = set()

    async def ship(self, order: Order) -> str:
        await asyncio.sleep(0)  # a real call yields: let a cancel interleave
        self.shipped.add(order.order_id)
        return f"TRK-{order.order_id}"


async def test_a_cancel_racing_the_dispatcher_never_leaves_an_order_shipped_and_cancelled(pipeline: Pipeline) -> None:
    ids = [mint(f"race-{n}", 2) for n in range(100)]
    for n, order_id in enumerate(ids):
        await pipeline.placed(order_placed(order_id, f"race-{n}"))
    await pipeline.drain()
    for order_id in ids:
        store = pipeline.parts.shards.for_order(order_id)
        assert store is not None
        await store.apply(Transition(order_id, f"{order_id}:paid", Status.PAID, "captured"), datetime.now(UTC))
    shipping = RecordingShipping()
    lifecycle = Lifecycle(pipeline.parts.shards, cast(Remote, shipping), utc_now)
    outcomes: dict[str, int] = {"shipped": 0, "cancelled": 0}
    for n, order_id in enumerate(ids):
        racers = [lifecycle.ship_many([order_id]), lifecycle.cancel(order_id, "changed my mind")]
        results = await asyncio.gather(*(racers if n % 2 else reversed(racers)), return_exceptions=True)
        unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, FailedPrecondition)]
        assert unexpected == [], "a racer may only lose with FAILED_PRECONDITION"
        order = await pipeline.get(order_id)
        if order.status == common_pb2.CANCELLED:
            assert order_id not in shipping.shipped, "cancelled, yet shipped"
            outcomes["cancelled"] += 1
        else:
            assert order.status == common_pb2.SHIPPED and order_id in shipping.shipped
            assert any(isinstance(r, FailedPrecondition) for r in results), "the late cancel was refused"
            outcomes["shipped"] += 1
    assert outcomes["shipped"] and outcomes["cancelled"], f"the race went both ways: {outcomes}"


class PaymentThatNeverCharged:
    """Payment as reconcile sees it when checkout never charged: counts every question."""

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}

    async def payment(self, order_id: str) -> PaymentState:
        self.asked[order_id] = self.asked.get(order_id, 0) + 1
        return PaymentState("NONE")


async def test_reconcile_backs_off_per_order_and_still_expires_each_on_time(pipeline: Pipeline) -> None:
    """300 PENDING orders payment knows nothing of, reconcile batches of 100. Each
    order is asked after 10 s, then after 20, 40, 80 s, then every 120 s (not on
    every tick), orders backing off never crowd the due ones out of a batch, and
    each is cancelled when its 5-minute payment window ends."""
    start = datetime.now(UTC)
    ids = [mint(f"unpaid-{n}", 2) for n in range(300)]
    for n, order_id in enumerate(ids):
        await pipeline.placed(order_placed(order_id, f"unpaid-{n}", at=start))
    await pipeline.drain()
    payment = PaymentThatNeverCharged()
    window = timedelta(minutes=5)
    config = LifecycleConfig(
        reconcile_after=timedelta(seconds=10), reconcile_backoff_max=timedelta(minutes=2), payment_window=window
    )
    lifecycle = Lifecycle(pipeline.parts.shards, cast(Remote, payment), utc_now, config)
    created = min([(await pipeline.parts.shards.for_order(i).get(i)).created_at for i in ids])  # type: ignore[union-attr]
    at = created + timedelta(seconds=11)
    for _ in range(4):  # batches of 100 per shard: every order asked once, the backed-off skipped
        await lifecycle.reconcile(at)
    assert sorted(payment.asked) == sorted(ids) and set(payment.asked.values()) == {1}
    ticks = 0
    while at < created + window + timedelta(seconds=10):  # a tick every 2 s, as a busy worker would
        at += timedelta(seconds=2)
        ticks += 1
        await lifecycle.reconcile(at)
    # Asked at about 11, 21, 41, 81, 161, 281 s and at the window's end (300 s): 7 times, not ~150.
    assert set(payment.asked.values()) <= {6, 7, 8}, Counter(payment.asked.values())
    for order_id in ids:
        assert (await pipeline.get(order_id)).status == common_pb2.CANCELLED
