"""Traces through every hop, on a whole mesh in one process (real Redis, SQLite):
every process has its own tracer provider, all of them feeding one in-memory
exporter, so a test sees what a collector would.

- one PlaceOrder is one trace over checkout, catalog, shipping and payment, with
  the catalog's OrderPlaced PRODUCER span (whose context the event carries) and
  the SQL and Redis calls under the spans that made them;
- a consumer's batch span links to the producer of every message, 250 of them;
- periodic jobs and the dispatcher link their per-order spans to the order's trace;
- the outbox relays publish in a PRODUCER span linked to each event's creation;
- no attribute anywhere carries a card number, CVV, email, street or zip code.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from catalog.bootstrap import bootstrap as catalog_bootstrap
from checkout.bootstrap import bootstrap as checkout_bootstrap
from checkout.settings import CheckoutSettings
from common.order_ids import mint
from mesh.bus import decode_envelope
from mesh.bus.redis_streams import StreamConsumer
from mesh.clock import utc_now
from mesh.lease import Lease
from mesh.local.procs import RedisServer
from mesh.server import App
from order.bootstrap import Components, build_consumers, components
from order.bootstrap import bootstrap as order_bootstrap
from order.relay import OutboxRelay
from order.settings import OrderSettings
from order.state import Status
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2
from ordermesh.order.v1 import order_pb2, order_pb2_grpc
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from payment.bootstrap import bootstrap as payment_bootstrap
from payment.settings import PaymentSettings
from shipping.bootstrap import bootstrap as shipping_bootstrap
from shipping.settings import ShippingSettings
from tests.integration.catalog_support import catalog_settings
from tests.support import eventually, serving, settle_order_pipeline

CARD_NUMBER = "4432801561520454"
CVV = 4719
EMAIL = "ada.lovelace@example.org"
STREET = "221B Baker Street"
ZIP = "NW1 6XE"
CARD = common_pb2.CreditCard(number=CARD_NUMBER, cvv=CVV, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address=STREET, city="London", country="GB", zip_code=ZIP)

CHECKOUT = "ordermesh.checkout.v1.CheckoutService"
CATALOG = "ordermesh.catalog.v1.CatalogService"
SHIPPING = "ordermesh.shipping.v1.ShippingService"
PAYMENT = "ordermesh.payment.v1.PaymentService"


@dataclass
class Mesh:
    exporter: InMemorySpanExporter
    redis: redis.Redis
    settings: OrderSettings
    parts: Components
    consumers: dict[str, StreamConsumer]
    relay: OutboxRelay
    checkout: checkout_pb2_grpc.CheckoutServiceAsyncStub
    catalog: catalog_pb2_grpc.CatalogServiceAsyncStub
    payment: payment_pb2_grpc.PaymentServiceAsyncStub
    order: order_pb2_grpc.OrderServiceAsyncStub

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    async def place(self, *, user: str = "ada") -> checkout_pb2.PlaceOrderResponse:
        return await self.checkout.PlaceOrder(
            checkout_pb2.PlaceOrderRequest(
                request_id=uuid.uuid4().hex,
                user_id=user,
                items=[common_pb2.LineItem(product_id="sku-1004", quantity=2)],
                address=HOME,
                email=EMAIL,
                credit_card=CARD,
            )
        )

    async def reserve(self, order_id: str) -> None:
        """An OrderPlaced without checkout (nothing charged)."""
        await self.catalog.ReserveStock(
            catalog_pb2.ReserveStockRequest(
                order_id=order_id,
                items=[common_pb2.LineItem(product_id="sku-1008", quantity=1)],
                draft=common_pb2.OrderDraft(
                    user_id="u", email=EMAIL, address=HOME, shipping_cost=common_pb2.Money(currency_code="USD", units=5)
                ),
            )
        )

    async def settle(self) -> None:
        """The order context's pipeline until quiet: rows, status events, outbox, dispatcher, compensator."""
        await settle_order_pipeline(self.consumers, self.relay)


@pytest.fixture
async def mesh(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Mesh]:
    exporter = InMemorySpanExporter()
    prefix = uuid.uuid4().hex[:8]

    def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{tmp_path / name}.db"

    def exported(app: App) -> App:
        app.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        return app

    async with AsyncExitStack() as stack:
        cat = catalog_settings(sqlite("catalog"), redis_server.url)
        catalog, catalog_channel = await stack.enter_async_context(serving(exported(await catalog_bootstrap(cat))))
        local = {"grpc_host": "127.0.0.1", "grpc_port": 0, "metrics_port": 0}
        payment_settings = PaymentSettings.model_validate({**local, "database_url": sqlite("payment")})
        payment, payment_channel = await stack.enter_async_context(
            serving(exported(await payment_bootstrap(payment_settings)))
        )
        shipping_settings = ShippingSettings.model_validate({**local, "database_url": sqlite("shipping")})
        shipping, _ = await stack.enter_async_context(serving(exported(await shipping_bootstrap(shipping_settings))))
        addresses = {
            "catalog_address": f"127.0.0.1:{catalog.port}",
            "payment_address": f"127.0.0.1:{payment.port}",
            "shipping_address": f"127.0.0.1:{shipping.port}",
        }
        updates = f"{prefix}:updates"
        checkout_settings = CheckoutSettings.model_validate(
            {**local, **addresses, "redis_url": redis_server.url, "order_updates_stream": updates}
        )
        _, checkout_channel = await stack.enter_async_context(
            serving(exported(await checkout_bootstrap(checkout_settings)))
        )
        settings = OrderSettings.model_validate(
            {
                **local,
                **addresses,
                "database_urls": sqlite("order"),
                "redis_url": redis_server.url,
                "order_placed_stream": cat.order_stream,
                "order_updates_stream": updates,
                "order_status_stream": f"{prefix}:status",
                "consumer_group": f"{prefix}-order",
                "consumer_batch_size": 300,  # a batch of 250 fits in one
            }
        )
        order_app = exported(await order_bootstrap(settings, workers=False))
        _, order_channel = await stack.enter_async_context(serving(order_app))
        parts = components(order_app)
        placed, updated, dispatcher, compensator = build_consumers(parts, settings, order_app.tracer)
        client = redis.Redis.from_url(redis_server.url)
        stack.push_async_callback(client.aclose)
        yield Mesh(
            exporter,
            client,
            settings,
            parts,
            {"placed": placed, "updates": updated, "dispatcher": dispatcher, "compensator": compensator},
            OutboxRelay(parts.shards, parts.publisher, settings.order_status_stream, Lease(parts.client, prefix, 5000)),
            checkout_pb2_grpc.CheckoutServiceStub(checkout_channel),
            catalog_pb2_grpc.CatalogServiceStub(catalog_channel),
            payment_pb2_grpc.PaymentServiceStub(payment_channel),
            order_pb2_grpc.OrderServiceStub(order_channel),
        )


def service(span: ReadableSpan) -> str:
    return str(span.resource.attributes.get("service.name", ""))


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def children(spans: Iterable[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def linked_ids(span: ReadableSpan) -> set[tuple[int, int]]:
    return {(link.context.trace_id, link.context.span_id) for link in span.links}


def ids(span: ReadableSpan) -> tuple[int, int]:
    return span.context.trace_id, span.context.span_id


def traceparent_ids(value: str) -> tuple[int, int]:
    _, trace_id, span_id, _ = value.split("-")
    return int(trace_id, 16), int(span_id, 16)


def only(spans: Sequence[ReadableSpan], what: str) -> ReadableSpan:
    assert len(spans) == 1, f"expected one {what}, found {[s.name for s in spans]}"
    return spans[0]


async def test_one_place_order_is_one_trace_across_checkout_catalog_shipping_and_payment(mesh: Mesh) -> None:
    answer = await mesh.place()
    assert answer.status == common_pb2.PAID
    spans = mesh.spans()
    root = only([s for s in spans if s.name == f"{CHECKOUT}/PlaceOrder"], "PlaceOrder server span")
    assert root.kind is SpanKind.SERVER and root.parent is None
    trace = [s for s in spans if s.context.trace_id == root.context.trace_id]

    # Every hop: a checkout CLIENT span, the callee's SERVER span its child.
    # Three calls: the catalog prices the order in ReserveStock (no GetProduct).
    assert sorted(s.name for s in trace if s.kind is SpanKind.CLIENT and s.name.startswith("ordermesh.")) == sorted(
        [f"{SHIPPING}/GetQuote", f"{CATALOG}/ReserveStock", f"{PAYMENT}/Charge"]
    )
    for name, callee in [
        (f"{SHIPPING}/GetQuote", "ordermesh-shipping"),
        (f"{CATALOG}/ReserveStock", "ordermesh-catalog"),
        (f"{PAYMENT}/Charge", "ordermesh-payment"),
    ]:
        client = only([s for s in trace if s.name == name and s.kind is SpanKind.CLIENT], f"{name} client span")
        assert service(client) == "ordermesh-checkout"
        server = only(children(trace, client), f"{name} server span")
        assert (server.kind, server.name, service(server)) == (SpanKind.SERVER, name, callee)

    # OrderPlaced: a PRODUCER span inside ReserveStock, with the Lua call (which
    # appends the event) under it; the event carries that span's context.
    reserve = next(s for s in trace if s.name == f"{CATALOG}/ReserveStock" and s.kind is SpanKind.SERVER)
    producer = only([s for s in children(trace, reserve) if s.kind is SpanKind.PRODUCER], "OrderPlaced producer")
    stream = mesh.settings.order_placed_stream
    placed_entries: Any = await mesh.redis.xrange(stream)
    [(entry_id, fields)] = placed_entries
    assert producer.name == f"publish {stream}"
    assert (
        attrs(producer).items()
        >= {
            "messaging.system": "redis",
            "messaging.destination.name": stream,
            "messaging.operation": "publish",
            "messaging.operation.type": "publish",
            "messaging.message.id": entry_id.decode(),
            "ordermesh.order.id": answer.order_id,
        }.items()
    )
    # EVALSHA (the first one finds no script and loads it: SCRIPT LOAD, EVALSHA again).
    assert {s.name for s in children(trace, producer)} <= {"EVALSHA", "SCRIPT LOAD"}
    assert children(trace, producer)[-1].name == "EVALSHA"
    carried = decode_envelope(fields[b"event"]).trace_context["traceparent"]
    assert traceparent_ids(carried) == ids(producer)

    # Checkout's PaymentCaptured: its own PRODUCER span, which its event carries too.
    updates = mesh.settings.order_updates_stream
    captured = only([s for s in trace if s.name == f"publish {updates}"], "PaymentCaptured producer")
    assert captured.kind is SpanKind.PRODUCER and service(captured) == "ordermesh-checkout"
    captured_entries: Any = await mesh.redis.xrange(updates)
    [(captured_id, captured_fields)] = captured_entries
    assert attrs(captured)["messaging.message.id"] == captured_id.decode()
    assert traceparent_ids(decode_envelope(captured_fields[b"event"]).trace_context["traceparent"]) == ids(captured)

    # SQL and Redis calls are CLIENT spans under the span that made them.
    charge = next(s for s in trace if s.name == f"{PAYMENT}/Charge" and s.kind is SpanKind.SERVER)
    sql = [s for s in trace if attrs(s).get("db.system") == "sqlite" and service(s) == "ordermesh-payment"]
    assert sql and all(s.parent is not None for s in sql)
    assert any(s.parent is not None and s.parent.span_id == charge.context.span_id for s in sql)
    commands = [s for s in trace if attrs(s).get("db.system") == "redis" and service(s) == "ordermesh-checkout"]
    by_parent = {(s.parent.span_id if s.parent else 0, s.name) for s in commands}
    assert (captured.context.span_id, "XADD") in by_parent  # the append, in its PRODUCER span
    assert {name for parent, name in by_parent if parent == root.context.span_id} >= {"SET"}  # the request's claim

    # The order context links its batch to that producer, and keeps the order's trace.
    await mesh.settle()
    batch = only([s for s in mesh.spans() if s.name == f"consume {stream}"], "OrderPlaced batch span")
    assert batch.kind is SpanKind.CONSUMER and ids(producer) in linked_ids(batch)
    order = await mesh.order.GetOrder(order_pb2.GetOrderRequest(order_id=answer.order_id))
    assert order.trace_id == format(root.context.trace_id, "032x")
    assert order.status == common_pb2.SHIPPED


async def test_a_batch_of_250_links_to_the_producer_of_every_message(mesh: Mesh) -> None:
    order_ids = [mint(f"user-{n}", 1) for n in range(250)]
    for order_id in order_ids:
        await mesh.reserve(order_id)
    stream = mesh.settings.order_placed_stream
    producers = [s for s in mesh.spans() if s.name == f"publish {stream}" and s.kind is SpanKind.PRODUCER]
    assert len(producers) == 250
    assert await mesh.consumers["placed"].run_until_idle() == 250
    batch = only([s for s in mesh.spans() if s.name == f"consume {stream}"], "batch span")
    assert attrs(batch)["messaging.batch.message_count"] == 250
    assert len(batch.links) == 250, "every link kept (the SDK's default limit is 128)"
    assert linked_ids(batch) == {ids(p) for p in producers}
    # Each order keeps the traceparent of its OrderPlaced, for the spans of later work.
    parents = await mesh.parts.shards.stores[0].trace_parents(order_ids)
    assert {traceparent_ids(v) for v in parents.values()} == {ids(p) for p in producers}


async def test_periodic_and_dispatcher_spans_link_to_the_orders_trace(mesh: Mesh) -> None:
    order_id = mint("grace", 1)
    await mesh.reserve(order_id)
    stream = mesh.settings.order_placed_stream
    producer = only([s for s in mesh.spans() if s.name == f"publish {stream}"], "OrderPlaced producer")
    await mesh.consumers["placed"].run_until_idle()
    # Charged, and the answer never reached checkout: reconcile finds the capture.
    await mesh.payment.Charge(
        payment_pb2.ChargeRequest(
            order_id=order_id, amount=common_pb2.Money(currency_code="USD", units=14), credit_card=CARD
        )
    )
    assert await mesh.parts.lifecycle.reconcile(utc_now() + timedelta(seconds=11)) == 1

    spans = mesh.spans()
    job = only([s for s in spans if s.name == "order reconcile"], "reconcile's span for the order")
    assert attrs(job).items() >= {"ordermesh.job": "reconcile", "ordermesh.order.id": order_id}.items()
    assert linked_ids(job) == {ids(producer)}, "linked to the OrderPlaced producer in the order's trace"
    assert job.context.trace_id != producer.context.trace_id, "a trace of its own"
    in_job = [s for s in spans if s.context.trace_id == job.context.trace_id]
    assert any(s.name == f"{PAYMENT}/GetPayment" and s.kind is SpanKind.CLIENT for s in children(in_job, job))
    # The PAID change it made: an OrderStatusChanged created in a span of its own, under the job's.
    status_stream = mesh.settings.order_status_stream
    created = only([s for s in children(in_job, job) if s.name == f"create {status_stream}"], "create span")
    assert created.kind is SpanKind.PRODUCER

    # The relay publishes it (linked to its creation); the dispatcher's batch links
    # to the creation span, and its span for the order links to the order's trace.
    await mesh.relay.relay_once()
    await mesh.consumers["dispatcher"].run_until_idle()
    spans = mesh.spans()
    relay = only([s for s in spans if s.name == f"publish {status_stream}"], "outbox relay span")
    assert relay.kind is SpanKind.PRODUCER and ids(created) in linked_ids(relay)
    dispatched = [s for s in spans if s.name == f"consume {status_stream}"]
    batch = only([s for s in dispatched if attrs(s)["messaging.consumer.group.name"] == "dispatcher"], "its batch")
    assert ids(created) in linked_ids(batch)
    ship = only([s for s in children(spans, batch) if s.name == "order ship"], "dispatcher's span for the order")
    assert linked_ids(ship) == {ids(producer)}
    assert [s.name for s in children(spans, ship) if s.kind is SpanKind.CLIENT] == [f"{SHIPPING}/ShipOrder"]
    assert (await mesh.parts.shards.stores[0].get(order_id)).status is Status.SHIPPED  # type: ignore[union-attr]


# A value counts as found only as a whole: the CVV's digits inside a longer
# number (a stream entry id is a millisecond time) are not the CVV.
SECRETS = {
    "card number": re.compile(re.escape(CARD_NUMBER)),
    "cvv": re.compile(rf"(?<!\d){CVV}(?!\d)"),
    "email": re.compile(re.escape(EMAIL), re.IGNORECASE),
    "street": re.compile(re.escape(STREET), re.IGNORECASE),
    "zip code": re.compile(re.escape(ZIP), re.IGNORECASE),
}


def everything_said(span: ReadableSpan) -> Iterable[tuple[str, str]]:
    """Every text a span exports: name, status, attributes of the span, its
    events, its links and its resource."""
    yield "name", span.name
    yield "status", span.status.description or ""
    sources: list[tuple[str, Any]] = [("attribute", span.attributes), ("resource", span.resource.attributes)]
    sources += [(f"event {e.name}", e.attributes) for e in span.events]
    sources += [("link", link.attributes) for link in span.links]
    for where, values in sources:
        for key, value in (values or {}).items():
            yield f"{where} {key}", str(value)


async def test_no_span_of_a_whole_order_carries_card_email_or_address(mesh: Mesh) -> None:
    shipped = await mesh.place()
    cancelled = await mesh.place(user="bob")
    for name in ("placed", "updates"):  # both PAID; the second is cancelled before it ships
        await mesh.consumers[name].run_until_idle()
    await mesh.order.CancelOrder(order_pb2.CancelOrderRequest(order_id=cancelled.order_id, reason="changed my mind"))
    await mesh.settle()
    assert (await mesh.order.GetOrder(order_pb2.GetOrderRequest(order_id=shipped.order_id))).status == (
        common_pb2.SHIPPED
    )
    cancelled_order = await mesh.order.GetOrder(order_pb2.GetOrderRequest(order_id=cancelled.order_id))
    assert cancelled_order.status == common_pb2.CANCELLED
    spans = mesh.spans()
    names = {s.name for s in spans}
    # The scan covers every kind of span an order makes (or it would prove little).
    assert {"compensate " + mesh.settings.order_status_stream, "order ship", "EVALSHA"} <= names
    assert any(attrs(s).get("db.system") == "sqlite" for s in spans)
    assert len(spans) > 100
    # Commands outside any trace (consumers reading their streams) make no span.
    assert "XREADGROUP" not in names
    leaks = [
        (service(span), span.name, where, secret)
        for span in spans
        for where, text in everything_said(span)
        for secret, pattern in SECRETS.items()
        if pattern.search(text)
    ]
    assert leaks == []


async def test_the_sql_paths_order_placed_is_published_by_the_relay_in_a_span_linked_to_its_creation(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    settings = catalog_settings(f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}", redis_server.url, stock_path="sql")
    app = await catalog_bootstrap(settings)
    app.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = redis.Redis.from_url(redis_server.url)
    try:
        async with serving(app) as (_, channel):  # its stock outbox relay runs as a worker
            await catalog_pb2_grpc.CatalogServiceStub(channel).ReserveStock(
                catalog_pb2.ReserveStockRequest(
                    order_id="o0-sqlpath",
                    items=[common_pb2.LineItem(product_id="sku-1008", quantity=1)],
                    draft=common_pb2.OrderDraft(user_id="u"),
                )
            )

            async def relayed() -> bool:
                return bool(await client.xlen(settings.order_stream))

            await eventually(relayed, what="the relay to publish the OrderPlaced")
        entries: Any = await client.xrange(settings.order_stream)
    finally:
        await client.aclose()
    stream = settings.order_stream
    spans = list(exporter.get_finished_spans())
    created = only([s for s in spans if s.name == f"publish {stream}" and s.links == ()], "the reservation's span")
    assert attrs(created)["messaging.operation.type"] == "create", "written to the outbox, not appended"
    relay = only([s for s in spans if s.name == f"publish {stream}" and s.links], "the relay's span")
    assert relay.kind is SpanKind.PRODUCER and linked_ids(relay) == {ids(created)}
    assert attrs(relay)["messaging.batch.message_count"] == 1
    assert traceparent_ids(decode_envelope(entries[0][1][b"event"]).trace_context["traceparent"]) == ids(created)
