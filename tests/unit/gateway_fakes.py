"""The gateway's mesh as in-process fakes at the gRPC stubs.

The fakes stand where the generated stubs do, so the real RemoteMesh (breakers,
deadlines, errors read from the trailing metadata) and the real HTTP app run
unchanged. Each stub answers from what a test put in it, raises what it was
told to (as the server interceptor would send it), and keeps what it was asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, cast

import grpc
import httpx
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from gateway import schemas
from gateway.bootstrap import http_app
from gateway.feed import Feed
from gateway.health import Health
from gateway.metrics import GatewayMetrics
from gateway.remote import DEPENDENCIES, RemoteMesh
from gateway.settings import GatewaySettings
from mesh.breaker import breakers_for
from mesh.errors import DomainError
from ordermesh.analytics.v1 import analytics_pb2
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.common.v1 import common_pb2
from ordermesh.order.v1 import order_pb2
from tests.unit.rpc import rpc_error, rpc_error_of

CARD_NUMBER = "4111111111111111"
TODAY = date(2030, 1, 2)
PLACED_AT = datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


def usd(units: int, nanos: int = 0) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", units=units, nanos=nanos)


def stamp(at: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at)
    return value


def product(product_id: str = "sku-1001") -> catalog_pb2.Product:
    return catalog_pb2.Product(
        id=product_id, name="Typewriter", description="1950s", price=usd(67, 990_000_000), stock=25, categories=["a"]
    )


def order(order_id: str = "o0-abc", statuses: tuple[str, ...] = ("PENDING",)) -> order_pb2.Order:
    history = [
        order_pb2.StatusChange(status=common_pb2.OrderStatus.Value(s), at=stamp(PLACED_AT), reason=s.lower())
        for s in statuses
    ]
    return order_pb2.Order(
        order_id=order_id,
        user_id="ada",
        status=common_pb2.OrderStatus.Value(statuses[-1]),
        items=[common_pb2.OrderItem(product_id="sku-1001", quantity=2, unit_price=usd(67, 990_000_000))],
        total=usd(141, 970_000_000),
        shipping_cost=usd(5, 990_000_000),
        address=common_pb2.Address(country="US", zip_code="62701"),
        email="ada@example.com",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        created_at=stamp(PLACED_AT),
        updated_at=stamp(PLACED_AT),
        history=history,
    )


def operator_event(order_id: str, kind: str = "status") -> schemas.OperatorEvent:
    return {
        "type": "placed" if kind == "placed" else "status",
        "order_id": order_id,
        "user_id": "ada" if kind == "placed" else None,
        "status": "PAID",
        "from_status": None,
        "total": None,
        "reason": None,
        "at": None,
    }


def order_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": "ada",
        "items": [{"product_id": "sku-1001", "quantity": 2}],
        "address": {
            "street_address": "1 Main St",
            "city": "Springfield",
            "state": "IL",
            "country": "US",
            "zip_code": "62701",
        },
        "email": "ada@example.com",
        "credit_card": {"number": CARD_NUMBER, "cvv": 123, "expiration_year": 2039, "expiration_month": 12},
    }
    body.update(changes)
    return body


@dataclass
class FakeStub:
    """Every method of a service stub: answers[name] (a message, a DomainError
    or a StatusCode to raise, or a function of the request), calls recorded."""

    answers: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)  # (method, request)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if not name[:1].isupper():
            raise AttributeError(name)

        async def call(request: Message, **_: object) -> Message:
            self.calls.append((name, request))
            answer = self.answers[name]
            if callable(answer) and not isinstance(answer, Message):
                answer = answer(request)
            if isinstance(answer, DomainError):
                raise rpc_error_of(answer)
            if isinstance(answer, grpc.StatusCode):
                raise rpc_error(answer)
            assert isinstance(answer, Message)
            return answer

        return call


@dataclass
class FakeMesh:
    catalog: FakeStub = field(default_factory=FakeStub)
    checkout: FakeStub = field(default_factory=FakeStub)
    order: FakeStub = field(default_factory=FakeStub)
    analytics: FakeStub = field(default_factory=FakeStub)

    def remote(self) -> RemoteMesh:
        breakers = breakers_for(DEPENDENCIES, fail_max=100, reset_timeout=10, metrics=None)
        catalog, checkout, order, analytics = cast(Any, (self.catalog, self.checkout, self.order, self.analytics))
        return RemoteMesh(catalog, checkout, order, analytics, breakers, 15.0)


def default_mesh() -> FakeMesh:
    mesh = FakeMesh()
    mesh.catalog.answers.update(
        ListProducts=catalog_pb2.ListProductsResponse(products=[product()], next_page_token="next"),
        GetProduct=product(),
    )
    mesh.checkout.answers["PlaceOrder"] = checkout_pb2.PlaceOrderResponse(
        order_id="o0-abc",
        status=common_pb2.PAID,
        total=usd(141, 970_000_000),
        shipping_cost=usd(5, 990_000_000),
    )
    mesh.order.answers.update(
        GetOrder=order(),
        ListOrders=order_pb2.ListOrdersResponse(orders=[order()]),
        CancelOrder=order(statuses=("PENDING", "CANCELLED")),
        ReviewOrder=order(statuses=("AWAITING_REVIEW", "PENDING")),
    )
    mesh.analytics.answers.update(
        TopProducts=analytics_pb2.TopProductsResponse(
            products=[analytics_pb2.ProductSales(product_id="sku-1001", units=3, revenue=usd(203, 970_000_000))]
        ),
        SalesSummary=analytics_pb2.SalesSummaryResponse(
            buckets=[
                analytics_pb2.SalesBucket(
                    start=stamp(PLACED_AT),
                    orders=2,
                    revenue=usd(10),
                    by_status=[analytics_pb2.StatusSales(status=common_pb2.PAID, orders=2, revenue=usd(10))],
                )
            ]
        ),
        SearchOrders=analytics_pb2.SearchOrdersResponse(
            orders=[
                analytics_pb2.OrderSummary(
                    order_id="o0-abc",
                    user_id="ada",
                    email="ada@example.com",
                    status=common_pb2.PAID,
                    total=usd(10),
                    created_at=stamp(PLACED_AT),
                )
            ]
        ),
    )
    return mesh


@dataclass
class Gateway:
    """The HTTP app over fakes, and what it was built from."""

    app: Starlette
    mesh: FakeMesh
    feed: Feed
    health: Health
    registry: CollectorRegistry

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gateway")


def gateway(mesh: FakeMesh | None = None, **settings: Any) -> Gateway:
    chosen = GatewaySettings(**{"sse_keepalive_seconds": 0.05, "order_poll_seconds": 0.01, **settings})
    registry = CollectorRegistry()
    fakes = mesh or default_mesh()
    feed = Feed(chosen.operator_ring_size, chosen.operator_queue_size)
    health = Health({}, 1.0)
    app = http_app(
        chosen,
        fakes.remote(),
        feed,
        health,
        tracer=TracerProvider().get_tracer("test"),
        metrics=GatewayMetrics(registry),
        today=lambda: TODAY,
    )
    return Gateway(app, fakes, feed, health, registry)
