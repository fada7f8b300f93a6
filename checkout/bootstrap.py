"""Wiring for the checkout process: the one place that connects to anything."""

from __future__ import annotations

from checkout.idempotency import Claims
from checkout.metrics import CheckoutMetrics
from checkout.quotes import RecentQuotes
from checkout.remote import Remote
from checkout.saga import PlaceOrder, SagaConfig
from checkout.service import CheckoutService
from checkout.settings import CheckoutSettings
from mesh.breaker import breakers_for
from mesh.bus.dead_letters import KeptOnStream
from mesh.bus.redis_streams import RedisPublisher
from mesh.bus.transport import EventTransport, forwarder_breaker, rocket_client
from mesh.clients import dependency_channels
from mesh.clock import utc_now
from mesh.money import Money
from mesh.process import new_app
from mesh.redis_pool import connect_for, pipe_for_settings
from mesh.server import App, Registration
from mesh.storage_spans import trace_storage
from mesh.tls import channel_credentials
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc

CATALOG = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"]
SHIPPING = shipping_pb2.DESCRIPTOR.services_by_name["ShippingService"]
PAYMENT = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"]


async def bootstrap(settings: CheckoutSettings) -> App:
    app = new_app("checkout", settings)
    client = connect_for(settings)
    pipe = pipe_for_settings(client, settings)
    trace_storage(app, clients=[client], pipes=[pipe])

    channels = dependency_channels(
        {CATALOG: settings.catalog_address, SHIPPING: settings.shipping_address, PAYMENT: settings.payment_address},
        tracer=app.tracer,
        default_timeout=settings.client_deadline_seconds,
        credentials=channel_credentials(settings),
        health_check=settings.client_health_check,
    )
    catalog, shipping, payment = channels[CATALOG.full_name], channels[SHIPPING.full_name], channels[PAYMENT.full_name]
    breakers = breakers_for(
        ("catalog", "shipping", "payment"),
        fail_max=settings.breaker_fail_max,
        reset_timeout=settings.breaker_reset_seconds,
        metrics=app.breaker_metrics,
    )
    remote = Remote(
        catalog_pb2_grpc.CatalogServiceStub(catalog),
        shipping_pb2_grpc.ShippingServiceStub(shipping),
        payment_pb2_grpc.PaymentServiceStub(payment),
        breakers,
        settings.payment_deadline_seconds,
        RecentQuotes(settings.quote_stale_seconds),
    )
    claims = Claims(
        client,
        ttl_seconds=settings.idempotency_ttl_seconds,
        wait_seconds=settings.duplicate_wait_seconds,
        takeover_after=settings.takeover_after_seconds,
        pipe=pipe,
    )
    saga = PlaceOrder(
        remote,
        claims,
        RedisPublisher(client, app.tracer, pipe),
        SagaConfig(
            Money.of(settings.review_threshold_currency, settings.review_threshold_units),
            settings.order_shards,
            settings.order_updates_stream,
        ),
        utc_now,
    )

    async def redis_ready() -> bool:
        return bool(await client.ping())

    app.services.append(
        Registration(
            checkout_pb2_grpc.add_CheckoutServiceServicer_to_server,
            CheckoutService(
                saga,
                lambda: utc_now().date(),
                max_lines=settings.max_lines_per_order,
                max_quantity=settings.max_units_per_line,
                metrics=CheckoutMetrics(app.registry),
            ),
            checkout_pb2.DESCRIPTOR.services_by_name["CheckoutService"].full_name,
        )
    )
    app.readiness["redis"] = redis_ready
    app.closers.append(client.aclose)
    if pipe is not None:
        app.closers.append(pipe.close)
    # On the rocketmq transport, the order-updates stream is forwarded to its topic from here.
    transport = EventTransport(
        settings,
        client,
        KeptOnStream(),
        app.tracer,
        rocket=rocket_client(settings),
        breaker=forwarder_breaker(settings, app.breaker_metrics),
        registry=app.registry,
    )
    app.closers.append(transport.close)
    app.workers += await transport.forwarders([settings.order_updates_stream])
    for ch in (catalog, shipping, payment):
        app.closers.append(lambda ch=ch: ch.close(grace=None))  # type: ignore[misc]
    return app
