"""Business metrics through a mesh of real servers in this process, each
bootstrapped as its process is (workers, consumers, periodic jobs), scraped
over HTTP on its own /metrics port: every metric dashboards and alerts use
is there from the start, and orders move each counter by exactly one."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from catalog.bootstrap import bootstrap as catalog_bootstrap
from checkout.bootstrap import bootstrap as checkout_bootstrap
from checkout.events import payment_captured
from checkout.settings import CheckoutSettings
from mesh.bus import encode_fields
from mesh.local.procs import RedisServer, free_port
from mesh.money import Money
from mesh.server import App, Server
from mesh.settings import ServiceSettings
from order.bootstrap import bootstrap as order_bootstrap
from order.settings import OrderSettings
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2
from payment.bootstrap import bootstrap as payment_bootstrap
from payment.settings import PaymentSettings
from shipping.bootstrap import bootstrap as shipping_bootstrap
from shipping.settings import ShippingSettings
from tests.integration.catalog_support import catalog_settings
from tests.support import eventually, serving

CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
DECLINED = common_pb2.CreditCard(number="4000000000000002", cvv=123, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", country="US", zip_code="62701")
JOBS = ("reconcile", "expire", "recover-shipping", "money", "money-orphans", "prune-applied")

Series = tuple[str, frozenset[tuple[str, str]]]
S = TypeVar("S", bound=ServiceSettings)

# Every series of the business metrics, per process, that must be in a scrape from the start.
EXPECTED: dict[str, list[tuple[str, dict[str, str]]]] = {
    "order": [
        ("ordermesh_orders_placed_total", {}),
        ("ordermesh_orders_paid_total", {}),
        ("ordermesh_orders_shipped_total", {}),
        *(
            ("ordermesh_orders_cancelled_total", {"reason": r})
            for r in (
                "declined",
                "payment_timeout",
                "review_rejected",
                "review_expired",
                "ship_failed",
                "customer",
                "other",
            )
        ),
        *(("ordermesh_orders_in_status", {"status": s}) for s in ("PENDING", "AWAITING_REVIEW", "SHIP_FAILED")),
        *(
            ("ordermesh_money_actions_total", {"action": a})
            for a in ("compensate", "refund_cancelled", "refund_orphan", "sweep_stalled")
        ),
        *(
            ("ordermesh_job_runs_total", {"job": j, "outcome": o})
            for j in JOBS
            for o in ("ok", "failed", "not_leader", "lease_lost")
        ),
        *(("ordermesh_job_last_success_timestamp_seconds", {"job": j}) for j in JOBS),
    ],
    "catalog": [
        *(("ordermesh_stock_reservation_outcomes_total", {"outcome": o}) for o in ("reserved", "short", "invalid")),
        *(("ordermesh_stock_reservations_total", {"path": p}) for p in ("redis", "sql")),
        *(("ordermesh_stock_refills_total", {"trigger": t}) for t in ("background", "inline")),
        ("ordermesh_stock_path", {}),
        ("ordermesh_stock_quota_units", {}),
        ("ordermesh_stock_products_exhausted", {}),
    ],
    "checkout": [
        ("ordermesh_checkout_place_order_total", {"outcome": o})
        for o in ("paid", "awaiting_review", "pending", "cancelled", "invalid", "short", "unavailable", "error")
    ],
}


def scrape(port: int) -> dict[Series, float]:
    """GET /metrics, as Prometheus does."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclass
class Mesh:
    servers: dict[str, Server]
    checkout: checkout_pb2_grpc.CheckoutServiceAsyncStub
    catalog: catalog_pb2_grpc.CatalogServiceAsyncStub
    redis: aioredis.Redis
    order_settings: OrderSettings
    order_stream: str

    async def scrape(self, process: str) -> dict[Series, float]:
        return await asyncio.to_thread(scrape, self.servers[process].app.settings.metrics_port)

    def value(self, process: str, name: str, **labels: str) -> float:
        """Read from the process's registry (what the scrape serves)."""
        found = self.servers[process].app.registry.get_sample_value(name, labels)
        assert found is not None, f"{process} has no {name}{labels}"
        return found

    async def place(self, product: str, quantity: int, card: common_pb2.CreditCard = CARD) -> str:
        answer = await self.checkout.PlaceOrder(
            checkout_pb2.PlaceOrderRequest(
                request_id=uuid.uuid4().hex,
                user_id="ada",
                items=[common_pb2.LineItem(product_id=product, quantity=quantity)],
                address=HOME,
                email="ada@example.com",
                credit_card=card,
            ),
            timeout=10,
        )
        return str(answer.order_id)

    async def until(self, name: str, value: float, **labels: str) -> None:
        await eventually(lambda: self.value("order", name, **labels) >= value, 15, f"{name}{labels} >= {value}")


def local(cls: type[S], **values: object) -> S:
    """Settings of a process on loopback, with a /metrics port of its own."""
    return cls.model_validate({"grpc_host": "127.0.0.1", "grpc_port": 0, "metrics_port": free_port(), **values})


@pytest.fixture
async def mesh(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Mesh]:
    # A Redis database of its own: the order jobs' leases have fixed names.
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/5"
    prefix = uuid.uuid4().hex[:8]
    catalog = catalog_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}", redis_url, metrics_port=free_port(), flusher_enabled=True
    )
    async with AsyncExitStack() as stack:
        servers: dict[str, Server] = {}

        async def start(name: str, app: App) -> grpc.aio.Channel:
            server, channel = await stack.enter_async_context(serving(app))
            servers[name] = server
            return channel

        sqlite = f"sqlite+aiosqlite:///{tmp_path}"
        await start("payment", await payment_bootstrap(local(PaymentSettings, database_url=f"{sqlite}/pay.db")))
        await start("shipping", await shipping_bootstrap(local(ShippingSettings, database_url=f"{sqlite}/ship.db")))
        catalog_channel = await start("catalog", await catalog_bootstrap(catalog))
        addresses = {
            f"{name}_address": f"127.0.0.1:{servers[name].port}" for name in ("catalog", "payment", "shipping")
        }
        order = local(
            OrderSettings,
            **addresses,
            database_urls=f"{sqlite}/order-0.db",
            redis_url=redis_url,
            order_placed_stream=catalog.order_stream,
            order_updates_stream=f"{prefix}:updates",
            order_status_stream=f"{prefix}:status",
            consumer_group=f"{prefix}-order",
            worker_interval_seconds=0.2,
            status_count_interval_seconds=0.2,
        )
        await start("order", await order_bootstrap(order))
        checkout = local(
            CheckoutSettings, **addresses, redis_url=redis_url, order_updates_stream=order.order_updates_stream
        )
        checkout_channel = await start("checkout", await checkout_bootstrap(checkout))
        client = aioredis.Redis.from_url(redis_url)
        stack.push_async_callback(client.aclose)
        yield Mesh(
            servers,
            checkout_pb2_grpc.CheckoutServiceStub(checkout_channel),
            catalog_pb2_grpc.CatalogServiceStub(catalog_channel),
            client,
            order,
            catalog.order_stream,
        )


async def test_business_metrics_are_scraped_and_move_once_per_order(mesh: Mesh) -> None:
    for process, expected in EXPECTED.items():
        scraped = await mesh.scrape(process)
        missing = [(n, labels) for n, labels in expected if (n, frozenset(labels.items())) not in scraped]
        assert not missing, f"{process}'s /metrics lacks {missing}"
    assert mesh.value("catalog", "ordermesh_stock_quota_units") > 0, "every product got a first allocation"
    assert mesh.value("catalog", "ordermesh_stock_products_exhausted") == 0

    paid = await mesh.place("sku-1004", 2)
    await mesh.until("ordermesh_orders_shipped_total", 1)
    declined = await mesh.place("sku-1005", 1, card=DECLINED)
    await mesh.until("ordermesh_orders_cancelled_total", 1, reason="declined")
    await mesh.until("ordermesh_money_actions_total", 1, action="compensate")

    # OrderPlaced and PaymentCaptured of the paid order delivered again (a
    # replay), then one more order: by the time it shipped, the replays were
    # consumed, and changed nothing.
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await mesh.redis.xrange(mesh.order_stream)  # type: ignore[assignment]
    placed_again = next(fields for _, fields in entries if fields[b"order_id"] == paid.encode())
    await mesh.redis.xadd(mesh.order_stream, placed_again)  # type: ignore[arg-type]
    captured_again = payment_captured(paid, "txn-replayed", Money.of("USD", 54), datetime.now(UTC))
    await mesh.redis.xadd(mesh.order_settings.order_updates_stream, encode_fields(captured_again))  # type: ignore[arg-type]
    await mesh.place("sku-1004", 1)
    await mesh.until("ordermesh_orders_shipped_total", 2)

    review = await mesh.place("sku-1012", 1)  # over the review threshold
    await mesh.until("ordermesh_orders_in_status", 1, status="AWAITING_REVIEW")
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await mesh.place("sku-1011", 31)  # 30 in stock
    assert short.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await mesh.place("sku-nope", 1)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await mesh.catalog.ReserveStock(catalog_pb2.ReserveStockRequest(order_id="", items=[]))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await mesh.until("ordermesh_orders_placed_total", 4)

    order = {name: mesh.value("order", f"ordermesh_orders_{name}_total") for name in ("placed", "paid", "shipped")}
    assert order == {"placed": 4, "paid": 2, "shipped": 2}, f"{paid} and {declined} counted once each, {review} placed"
    cancelled = (await mesh.scrape("order"))[("ordermesh_orders_cancelled_total", frozenset({("reason", "declined")}))]
    assert cancelled == 1
    assert sum(mesh.value("order", "ordermesh_orders_cancelled_total", reason=r) for r in ("customer", "other")) == 0
    checkout = {
        o: mesh.value("checkout", "ordermesh_checkout_place_order_total", outcome=o)
        for o in ("paid", "awaiting_review", "pending", "cancelled", "invalid", "short", "unavailable", "error")
    }
    assert checkout == {
        "paid": 2,
        "awaiting_review": 1,
        "pending": 0,
        "cancelled": 1,
        "invalid": 1,
        "short": 1,
        "unavailable": 0,
        "error": 0,
    }
    reservations = {
        o: mesh.value("catalog", "ordermesh_stock_reservation_outcomes_total", outcome=o)
        for o in ("reserved", "short", "invalid")
    }
    # The unknown product reaches the catalog (checkout looks no price up: the
    # reservation prices the order), which refuses it; the bad request too.
    assert reservations == {"reserved": 4, "short": 1, "invalid": 2}

    await mesh.catalog.SetStock(catalog_pb2.SetStockRequest(product_id="sku-1003", stock=0))
    await eventually(
        lambda: mesh.value("catalog", "ordermesh_stock_products_exhausted") == 1,
        10,
        "sku-1003 counted exhausted once the flusher applied its new stock",
    )
    for job in JOBS:
        await mesh.until("ordermesh_job_runs_total", 1, job=job, outcome="ok")
        assert mesh.value("order", "ordermesh_job_last_success_timestamp_seconds", job=job) > 0
