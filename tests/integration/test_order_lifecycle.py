"""Order lifecycle against real catalog, payment and shipping servers, driven by a fake clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from auditor.audit import audit, clean, render
from auditor.settings import AuditSettings
from auditor.snapshot import open_sources
from catalog.bootstrap import bootstrap as catalog_bootstrap
from catalog.settings import CatalogSettings
from checkout.bootstrap import bootstrap as checkout_bootstrap
from checkout.settings import CheckoutSettings
from common.order_ids import mint
from mesh.bus import encode_fields
from mesh.bus.redis_streams import StreamConsumer
from mesh.errors import Unavailable
from mesh.lease import Lease
from mesh.local.procs import RedisServer, free_port
from mesh.server import Server
from order.bootstrap import Components, bootstrap, build_consumers, components
from order.handlers import Dispatcher
from order.lifecycle import Lifecycle, LifecycleConfig, MoneyAction
from order.relay import OutboxRelay
from order.settings import OrderSettings
from order.state import Status
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from payment.bootstrap import bootstrap as payment_bootstrap
from payment.settings import PaymentSettings
from shipping.bootstrap import bootstrap as shipping_bootstrap
from shipping.settings import ShippingSettings
from tests.integration.catalog_support import catalog_settings
from tests.support import eventually, serving, settle_order_pipeline

CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", country="US", zip_code="62701")
PRODUCT = "sku-1004"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    clock: FakeClock
    parts: Components
    settings: OrderSettings
    consumers: dict[str, StreamConsumer]
    relay: OutboxRelay
    catalog: catalog_pb2_grpc.CatalogServiceAsyncStub
    payment: payment_pb2_grpc.PaymentServiceAsyncStub
    shipping_settings: ShippingSettings
    shipping_server: Server | None
    payment_url: str
    payment_settings: PaymentSettings
    catalog_settings: CatalogSettings
    payment_server: Server | None = None

    async def stock(self) -> int:
        return int((await self.catalog.GetProduct(catalog_pb2.GetProductRequest(id=PRODUCT))).stock)

    async def new_order(self, *, charge: bool, review: bool = False, announce: bool = True) -> str:
        """Reserve (OrderPlaced), optionally charge, optionally tell the order context."""
        order_id = mint(f"user-{uuid.uuid4().hex[:6]}", 1)
        await self.catalog.ReserveStock(
            catalog_pb2.ReserveStockRequest(
                order_id=order_id,
                items=[common_pb2.LineItem(product_id=PRODUCT, quantity=2)],
                draft=common_pb2.OrderDraft(
                    user_id="u",
                    address=HOME,
                    shipping_cost=common_pb2.Money(currency_code="USD", units=6),  # 2 x 24 + 6: the charge
                    initial_status=common_pb2.AWAITING_REVIEW if review else common_pb2.PENDING,
                ),
            )
        )
        if charge:
            payment = await self.payment.Charge(
                payment_pb2.ChargeRequest(
                    order_id=order_id, amount=common_pb2.Money(currency_code="USD", units=54), credit_card=CARD
                )
            )
            if announce:
                envelope = events_pb2.Envelope(
                    event_id=f"{order_id}:payment",
                    order_id=order_id,
                    payment_captured=events_pb2.PaymentCaptured(transaction_id=payment.transaction_id),
                )
                await self.parts.publisher.publish(self.settings.order_updates_stream, encode_fields(envelope))
        await self.settle()
        return order_id

    async def settle(self) -> None:
        """Run the pipeline until quiet: inserts, status events, outbox, dispatcher, compensator."""
        await settle_order_pipeline(self.consumers, self.relay)

    async def status(self, order_id: str) -> Status:
        order = await self.parts.shards.stores[0].get(order_id)
        assert order is not None
        return order.status

    async def history(self, order_id: str) -> list[str]:
        order = await self.parts.shards.stores[0].get(order_id)
        assert order is not None
        return [change.status.value for change in order.history]

    async def payment_status(self, order_id: str) -> int:
        return int((await self.payment.GetPayment(payment_pb2.GetPaymentRequest(order_id=order_id))).status)

    async def assert_audit_clean(self) -> None:
        """The global auditor over every context of this world, at the world's time."""
        settings = AuditSettings(
            catalog_database_url=self.catalog_settings.database_url,
            order_database_urls=self.settings.database_urls,
            payment_database_url=self.payment_url,
            shipping_database_url=self.shipping_settings.database_url,
            redis_url=self.settings.redis_url,
            catalog_key_prefix=self.catalog_settings.catalog_key_prefix,
        )
        async with open_sources(settings) as sources:
            checks = await audit(sources, window=timedelta(minutes=31), clock=self.clock)
        assert clean(checks), render(checks)

    @asynccontextmanager
    async def checkout_with_slow_payment(
        self, *, latency: float, failure_rate: float = 0.0, deadline: float
    ) -> AsyncIterator[checkout_pb2_grpc.CheckoutServiceAsyncStub]:
        """A checkout whose payment (this world's database) answers after ``latency``
        seconds, or refuses a share of charges, called with ``deadline``."""
        slow = PaymentSettings(
            grpc_host="127.0.0.1",
            grpc_port=0,
            metrics_port=0,
            database_url=self.payment_url,
            payment_latency_seconds=latency,
            payment_failure_rate=failure_rate,
        )
        async with AsyncExitStack() as stack:
            slow_server, _ = await stack.enter_async_context(serving(await payment_bootstrap(slow)))
            checkout_settings = CheckoutSettings(
                grpc_host="127.0.0.1",
                grpc_port=0,
                metrics_port=0,
                redis_url=self.settings.redis_url,
                catalog_address=self.settings.catalog_address,
                shipping_address=self.settings.shipping_address,
                payment_address=f"127.0.0.1:{slow_server.port}",
                payment_deadline_seconds=deadline,
                order_updates_stream=self.settings.order_updates_stream,
            )
            _, channel = await stack.enter_async_context(serving(await checkout_bootstrap(checkout_settings)))
            yield checkout_pb2_grpc.CheckoutServiceStub(channel)

    async def start_shipping(self) -> None:
        self.shipping_server = Server(await shipping_bootstrap(self.shipping_settings))
        await self.shipping_server.start()

    async def stop_shipping(self) -> None:
        assert self.shipping_server is not None
        await self.shipping_server.stop()
        self.shipping_server = None

    async def start_payment(self) -> None:
        self.payment_server = Server(await payment_bootstrap(self.payment_settings))
        await self.payment_server.start()

    async def stop_payment(self) -> None:
        assert self.payment_server is not None
        await self.payment_server.stop()
        self.payment_server = None


@pytest.fixture
async def world(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock()
    prefix = uuid.uuid4().hex[:8]
    cat_settings = catalog_settings(f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}", redis_server.url)
    pay = PaymentSettings(
        grpc_host="127.0.0.1",
        grpc_port=free_port(),  # a fixed port: the test stops and starts payment
        metrics_port=0,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'pay.db'}",
    )
    ship = ShippingSettings(
        grpc_host="127.0.0.1",
        grpc_port=free_port(),
        metrics_port=0,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ship.db'}",
    )
    async with AsyncExitStack() as stack:
        catalog_server, catalog_channel = await stack.enter_async_context(
            serving(await catalog_bootstrap(cat_settings))
        )
        payment_channel = grpc.aio.insecure_channel(f"127.0.0.1:{pay.grpc_port}")
        stack.push_async_callback(payment_channel.close, None)
        settings = OrderSettings(
            grpc_host="127.0.0.1",
            grpc_port=0,
            metrics_port=0,
            database_urls=f"sqlite+aiosqlite:///{tmp_path / 'order-0.db'}",
            redis_url=redis_server.url,
            order_placed_stream=cat_settings.order_stream,
            order_updates_stream=f"{prefix}:updates",
            order_status_stream=f"{prefix}:status",
            consumer_group=f"{prefix}-order",
            catalog_address=f"127.0.0.1:{catalog_server.port}",
            payment_address=f"127.0.0.1:{pay.grpc_port}",
            shipping_address=f"127.0.0.1:{ship.grpc_port}",
            client_deadline_seconds=2,
            breaker_reset_seconds=0.2,
            ship_max_attempts=3,
            ship_backoff_seconds=5,
        )
        tracer = TracerProvider().get_tracer("test")
        parts = components(await bootstrap(settings, clock=clock, workers=False))
        stack.push_async_callback(parts.close)
        placed, updates, dispatcher, compensator = build_consumers(parts, settings, tracer)
        relay = OutboxRelay(
            parts.shards, parts.publisher, settings.order_status_stream, Lease(parts.client, prefix, 5000)
        )
        world = World(
            clock,
            parts,
            settings,
            {"placed": placed, "updates": updates, "dispatcher": dispatcher, "compensator": compensator},
            relay,
            catalog_pb2_grpc.CatalogServiceStub(catalog_channel),
            payment_pb2_grpc.PaymentServiceStub(payment_channel),
            ship,
            None,
            pay.database_url,
            pay,
            cat_settings,
        )
        await world.start_payment()
        await world.start_shipping()
        try:
            yield world
        finally:
            if world.shipping_server is not None:
                await world.stop_shipping()
            if world.payment_server is not None:
                await world.stop_payment()


async def test_paid_order_ships_once_even_with_two_dispatchers(world: World) -> None:
    second = StreamConsumer(
        world.parts.client, world.settings.order_status_stream, "dispatcher", Dispatcher(world.parts.lifecycle),
        world.parts.dead_letters(), tracer=TracerProvider().get_tracer("test"), consumer="replica-2",
    )  # fmt: skip
    ids = [await world.new_order(charge=True) for _ in range(6)]
    # Redeliver every PAID change to both replicas at once: ShipOrder and the
    # SHIPPED transition are both idempotent per order.
    await asyncio.gather(world.consumers["dispatcher"].run_until_idle(), second.run_until_idle())
    await world.settle()
    for order_id in ids:
        assert await world.history(order_id) == ["PENDING", "PAID", "SHIPPING", "SHIPPED"]
    async with grpc.aio.insecure_channel(world.settings.shipping_address) as channel:
        shipping = shipping_pb2_grpc.ShippingServiceStub(channel)
        shipped = [await shipping.GetShipment(shipping_pb2.GetShipmentRequest(order_id=o)) for o in ids]
    assert len({s.tracking_id for s in shipped}) == len(ids)
    tracked = [(await world.parts.shards.stores[0].get(o)) for o in ids]
    assert [o.tracking_id for o in tracked if o] == [s.tracking_id for s in shipped]
    await world.assert_audit_clean()


async def test_cancel_of_a_paid_order_refunds_and_restores_stock(world: World) -> None:
    await world.stop_shipping()  # keep it PAID: nothing ships meanwhile
    before = await world.stock()
    order_id = await world.new_order(charge=True)
    assert await world.status(order_id) in (Status.PAID, Status.SHIP_FAILED)
    assert await world.stock() == before - 2
    await world.start_shipping()  # a SHIP_FAILED order is cancelled once shipping says nothing left

    async def cancelled() -> bool:  # its channel and breaker take a moment to see shipping back
        try:
            await world.parts.lifecycle.cancel(order_id, "changed my mind")
        except Unavailable:
            return False
        return True

    await eventually(cancelled, within=15, what="the cancel once shipping answers again")
    await world.settle()
    assert await world.status(order_id) is Status.CANCELLED
    assert await world.payment_status(order_id) == payment_pb2.REFUNDED
    assert await world.stock() == before
    await world.assert_audit_clean()


async def test_reconcile_pending_orders_by_asking_payment(world: World) -> None:
    before = await world.stock()
    charged = await world.new_order(charge=True, announce=False)  # the answer timed out: PENDING
    never = await world.new_order(charge=False)  # nothing was charged at all
    assert (await world.status(charged), await world.status(never)) == (Status.PENDING, Status.PENDING)
    assert await world.parts.lifecycle.reconcile(world.clock()) == 0, "too early to reconcile"
    world.clock.advance(seconds=11)
    assert await world.parts.lifecycle.reconcile(world.clock()) == 1
    await world.settle()
    assert await world.history(charged) == ["PENDING", "PAID", "SHIPPING", "SHIPPED"]
    assert await world.status(never) is Status.PENDING, "still inside the payment window"
    world.clock.advance(minutes=31)
    assert await world.parts.lifecycle.reconcile(world.clock()) == 1
    await world.settle()
    assert await world.status(never) is Status.CANCELLED
    assert await world.stock() == before - 2, "the cancelled order's stock is back; the shipped one's is not"
    await world.assert_audit_clean()


async def test_unreviewed_orders_expire(world: World) -> None:
    before = await world.stock()
    order_id = await world.new_order(charge=True, review=True)
    assert await world.status(order_id) is Status.AWAITING_REVIEW
    assert await world.parts.lifecycle.expire(world.clock()) == 0
    world.clock.advance(minutes=31)
    assert await world.parts.lifecycle.expire(world.clock()) == 1
    await world.settle()
    assert await world.history(order_id) == ["AWAITING_REVIEW", "CANCELLED"]
    assert await world.payment_status(order_id) == payment_pb2.REFUNDED
    assert await world.stock() == before
    await world.assert_audit_clean()


async def test_shipping_down_then_back_recovers_with_backoff(world: World) -> None:
    await world.stop_shipping()
    order_id = await world.new_order(charge=True)
    assert await world.history(order_id) == ["PENDING", "PAID", "SHIPPING", "SHIP_FAILED"]
    await world.start_shipping()
    assert await world.parts.lifecycle.recover(world.clock()) == 0, "backing off"
    world.clock.advance(seconds=6)
    await asyncio.sleep(0.3)  # let the breaker's real-time reset pass
    assert await world.parts.lifecycle.recover(world.clock()) == 1
    assert await world.history(order_id) == ["PENDING", "PAID", "SHIPPING", "SHIP_FAILED", "SHIPPING", "SHIPPED"]
    await world.assert_audit_clean()


async def test_shipping_that_never_ships_gives_up_only_after_asking_and_compensates(world: World) -> None:
    await world.stop_shipping()
    before = await world.stock()
    order_id = await world.new_order(charge=True)
    for _ in range(4):
        world.clock.advance(minutes=10)
        await asyncio.sleep(0.3)
        await world.parts.lifecycle.recover(world.clock())
    # Out of attempts, but shipping cannot be asked whether a shipment exists: wait.
    failed = ["SHIPPING", "SHIP_FAILED"] * 3
    assert await world.history(order_id) == ["PENDING", "PAID", *failed]
    await world.start_shipping()

    async def gave_up() -> bool:  # shipping answers again (its channel reconnects): no shipment
        await world.parts.lifecycle.recover(world.clock())
        return await world.status(order_id) is Status.CANCELLED

    await eventually(gave_up, within=15, what="recover to give up once shipping says there is no shipment")
    await world.settle()
    assert await world.history(order_id) == ["PENDING", "PAID", *failed, "CANCELLED"]
    assert await world.payment_status(order_id) == payment_pb2.REFUNDED
    assert await world.stock() == before
    await world.assert_audit_clean()


@pytest.mark.parametrize("charged", [True, False], ids=["charge-happened", "charge-never-happened"])
async def test_payment_past_the_deadline_leaves_pending_then_reconciles(world: World, charged: bool) -> None:
    """Checkout with a payment slower than its deadline (or failing): PENDING, then the
    reconcile worker settles it by asking payment."""
    before = await world.stock()
    async with world.checkout_with_slow_payment(
        latency=1.0 if charged else 0.0, failure_rate=0.0 if charged else 1.0, deadline=0.3
    ) as checkout:
        answer = await checkout.PlaceOrder(
            checkout_pb2.PlaceOrderRequest(
                request_id=uuid.uuid4().hex,
                user_id="slowpoke",
                items=[common_pb2.LineItem(product_id=PRODUCT, quantity=2)],
                address=HOME,
                email="s@example.com",
                credit_card=CARD,
            )
        )
        assert answer.status == common_pb2.PENDING
        if charged:

            async def captured() -> bool:
                try:
                    return await world.payment_status(answer.order_id) == payment_pb2.CAPTURED
                except grpc.aio.AioRpcError:
                    return False

            await eventually(captured, within=10, what="the slow charge to land")
    await world.settle()
    assert await world.status(answer.order_id) is Status.PENDING
    world.clock.advance(seconds=11)
    await world.parts.lifecycle.reconcile(world.clock())
    if not charged:
        assert await world.status(answer.order_id) is Status.PENDING, "inside the payment window"
        world.clock.advance(minutes=31)
        await world.parts.lifecycle.reconcile(world.clock())
    await world.settle()
    if charged:
        assert await world.history(answer.order_id) == ["PENDING", "PAID", "SHIPPING", "SHIPPED"]
    else:
        assert await world.history(answer.order_id) == ["PENDING", "CANCELLED"]
        assert await world.stock() == before
    await world.assert_audit_clean()


async def test_payment_down_while_orders_are_cancelled_refunds_them_all_when_it_returns(world: World) -> None:
    before = await world.stock()
    ids = [await world.new_order(charge=True, review=True) for _ in range(20)]  # charged, awaiting review
    await world.stop_payment()
    for order_id in ids:
        await world.parts.lifecycle.cancel(order_id, "changed my mind")
    for _ in range(8):  # more rounds than a message has attempts: none may be spent
        await world.settle()
    assert await world.parts.dead_letters().pending() == []
    await world.start_payment()

    async def all_refunded() -> bool:
        await world.settle()
        return [await world.payment_status(order_id) for order_id in ids] == [payment_pb2.REFUNDED] * 20

    await eventually(all_refunded, within=20, what="every cancelled order refunded once payment is back")
    assert await world.parts.dead_letters().pending() == []
    assert await world.stock() == before
    await world.assert_audit_clean()


async def test_the_money_sweep_refunds_a_capture_the_compensator_missed(world: World) -> None:
    kept = await world.new_order(charge=True, review=True)  # charged, awaiting review
    never_charged = await world.new_order(charge=False, review=True)
    for order_id in (kept, never_charged):  # cancelled; the compensator does not run here
        await world.parts.lifecycle.cancel(order_id, "changed my mind")
    assert await world.payment_status(kept) == payment_pb2.CAPTURED
    assert await world.parts.lifecycle.settle_money(world.clock()) == 0, "too soon: the compensator goes first"
    world.clock.advance(minutes=2)
    await world.stop_payment()
    assert await world.parts.lifecycle.settle_money(world.clock()) == 0, "payment down: stop, skip nothing"
    await world.start_payment()

    async def swept() -> bool:
        await world.parts.lifecycle.settle_money(world.clock())
        return await world.payment_status(kept) == payment_pb2.REFUNDED

    await eventually(swept, within=15, what="the sweep to refund the kept capture")
    assert await world.parts.lifecycle.settle_money(world.clock()) == 0, "each order is settled once"
    await world.settle()  # the compensator's turn at last: it releases the stock (the refund is done)
    await world.assert_audit_clean()


async def test_an_approval_while_payment_cannot_answer_is_settled_later(world: World) -> None:
    """GetPayment fails during the approval: the approval stands (PENDING), and
    reconcile, under its own event id, makes the order PAID once payment answers."""
    order_id = await world.new_order(charge=True, review=True)
    await world.stop_payment()
    approved = await world.parts.lifecycle.review(order_id, approve=True, reviewer="bob", note="")
    assert approved.status is Status.PENDING
    world.clock.advance(seconds=11)
    assert await world.parts.lifecycle.reconcile(world.clock()) == 0, "payment still down: nothing settled"
    assert await world.status(order_id) is Status.PENDING
    await world.start_payment()

    async def paid() -> bool:
        await world.parts.lifecycle.reconcile(world.clock())
        return await world.status(order_id) is not Status.PENDING

    await eventually(paid, within=15, what="reconcile to settle the approved order")
    await world.settle()
    assert await world.history(order_id) == ["AWAITING_REVIEW", "PENDING", "PAID", "SHIPPING", "SHIPPED"]
    await world.assert_audit_clean()


async def test_a_cancel_while_the_charge_is_in_flight_keeps_no_money(world: World) -> None:
    """Checkout's charge is slow (payment answers after 1.5 s); the customer
    cancels the stored PENDING order meanwhile. The charge is stored before
    the cancel and answered after it: the compensator's refund finds it, and
    no money stays on the cancelled order."""
    before = await world.stock()
    async with world.checkout_with_slow_payment(latency=1.5, deadline=5) as checkout:
        placing = asyncio.ensure_future(
            checkout.PlaceOrder(
                checkout_pb2.PlaceOrderRequest(
                    request_id=uuid.uuid4().hex,
                    user_id="hasty",
                    items=[common_pb2.LineItem(product_id=PRODUCT, quantity=2)],
                    address=HOME,
                    email="h@example.com",
                    credit_card=CARD,
                )
            )
        )
        stored: list[str] = []

        async def pending() -> bool:
            await world.settle()
            orders = await world.parts.shards.stores[0].by_user("hasty", 10, None)
            stored[:] = [o.order_id for o in orders if o.status is Status.PENDING]
            return bool(stored)

        await eventually(pending, within=10, what="the order to be stored while its charge is in flight")
        assert not placing.done(), "the charge is still in flight"
        await world.parts.lifecycle.cancel(stored[0], "changed my mind")
        await world.settle()  # the compensator refunds the stored charge and releases the stock
        assert await world.payment_status(stored[0]) == payment_pb2.REFUNDED, "refunded by the compensator"
        answer = await placing
    # The charge landed before the cancel (payment answers late): the client may
    # have been told PAID, but the compensator refunded it.
    assert answer.order_id == stored[0]
    world.clock.advance(minutes=2)  # past the money sweep's settle time
    await world.parts.lifecycle.settle_money(world.clock())
    await world.settle()
    assert await world.payment_status(answer.order_id) != payment_pb2.CAPTURED
    assert await world.status(answer.order_id) is Status.CANCELLED
    assert await world.stock() == before
    await world.assert_audit_clean()


async def test_the_money_sweep_refunds_captures_whose_order_never_arrived(world: World) -> None:
    """Charges with no order: one whose OrderPlaced never arrived (an id of this
    mesh) and one made by hand. Once no order can claim them any more they are
    refunded, walking payment's captures a page (here 2) at a time from where
    the walk stopped; a capture with its order is left alone."""
    shipped = await world.new_order(charge=True)
    lost = [mint(f"user-{uuid.uuid4().hex[:6]}", 1) for _ in range(3)]
    for order_id in [*lost, "by-hand-1"]:
        amount = common_pb2.Money(currency_code="USD", units=54)
        await world.payment.Charge(payment_pb2.ChargeRequest(order_id=order_id, amount=amount, credit_card=CARD))
    config = LifecycleConfig(orphan_after=timedelta(minutes=31), batch=2)
    refunds: list[MoneyAction] = []
    sweep = Lifecycle(world.parts.shards, world.parts.remote, world.clock, config, on_money=refunds.append)
    assert await sweep.refund_orphans(world.clock()) == 0, "too soon: their orders may still arrive"
    world.clock.advance(minutes=32)
    for _ in range(4):  # five captures, two per page: three runs walk them, a fourth finds nothing new
        await sweep.refund_orphans(world.clock())
    assert refunds == [MoneyAction.REFUND_ORPHAN] * 4
    for order_id in [*lost, "by-hand-1"]:
        assert await world.payment_status(order_id) == payment_pb2.REFUNDED
    assert await world.payment_status(shipped) == payment_pb2.CAPTURED
    await world.assert_audit_clean()
