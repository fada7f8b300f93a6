"""Checkout's dependencies as in-process fakes, wired into the real saga.

The fakes stand at the gRPC stubs (catalog, shipping, payment) and at the
publisher, so the real Remote (breakers, relayed errors, unknown charges), the
real Claims (on a fake Redis) and the real PlaceOrder run unchanged. They keep
what was asked of them, so a test can say what was reserved, charged, released
and published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from catalog.stock import InsufficientStock, Shortage
from checkout.idempotency import Claims
from checkout.remote import Remote
from checkout.saga import PlaceOrder, SagaConfig
from mesh.breaker import breakers_for
from mesh.bus import decode_envelope, encode_fields
from mesh.bus.redis_streams import RedisPublisher
from mesh.errors import NotFound
from mesh.money import Money
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from tests.unit.fake_redis import FakeRedis
from tests.unit.rpc import rpc_error_of

UPDATES = "events:order-updates"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
SHIPPING_COST = Money.of("USD", 5, 990_000_000)


@dataclass
class Reservation:
    items: list[common_pb2.LineItem]
    draft: common_pb2.OrderDraft
    total: Money
    released: bool = False


class FakeCatalog:
    """ReserveStock (idempotent by order id; it prices the order and decides
    review from the draft's review_at) and ReleaseStock, as catalog answers them.
    No GetProduct: checkout must not need one."""

    def __init__(self, prices: dict[str, Money], stock: dict[str, int]) -> None:
        self.prices = prices
        self.stock = stock
        self.reservations: dict[str, Reservation] = {}
        self.reserve_calls: list[str] = []
        self.release_calls: list[str] = []

    async def ReserveStock(self, request: catalog_pb2.ReserveStockRequest, **_: object) -> catalog_pb2.Reservation:
        self.reserve_calls.append(request.order_id)
        earlier = self.reservations.get(request.order_id)
        if earlier is not None:
            return catalog_pb2.Reservation(
                order_id=request.order_id,
                items=earlier.items,
                already_reserved=True,
                released=earlier.released,
                total=earlier.total.to_proto(),
                initial_status=earlier.draft.initial_status,
            )
        wanted: dict[str, int] = {}
        for item in request.items:
            wanted[item.product_id] = wanted.get(item.product_id, 0) + item.quantity
        if unknown := sorted(p for p in wanted if p not in self.prices):
            raise rpc_error_of(NotFound("product", unknown[0]))
        short = [Shortage(p, q, self.stock[p]) for p, q in sorted(wanted.items()) if self.stock[p] < q]
        if short:
            raise rpc_error_of(InsufficientStock(short))
        total = Money.from_proto(request.draft.shipping_cost)
        for product_id, quantity in wanted.items():
            self.stock[product_id] -= quantity
            total = total + self.prices[product_id].times(quantity)
        draft = common_pb2.OrderDraft()
        draft.CopyFrom(request.draft)
        review = draft.HasField("review_at") and total.nanos_total >= Money.from_proto(draft.review_at).nanos_total
        draft.initial_status = common_pb2.AWAITING_REVIEW if review else common_pb2.PENDING
        self.reservations[request.order_id] = Reservation(list(request.items), draft, total)
        return catalog_pb2.Reservation(
            order_id=request.order_id, items=request.items, total=total.to_proto(), initial_status=draft.initial_status
        )

    async def ReleaseStock(
        self, request: catalog_pb2.ReleaseStockRequest, **_: object
    ) -> catalog_pb2.ReleaseStockResponse:
        self.release_calls.append(request.order_id)
        reservation = self.reservations.get(request.order_id)
        if reservation is None or reservation.released:
            return catalog_pb2.ReleaseStockResponse(released=False)
        reservation.released = True
        for item in reservation.items:
            self.stock[item.product_id] += item.quantity
        return catalog_pb2.ReleaseStockResponse(released=True)


class FakeShipping:
    async def GetQuote(self, request: shipping_pb2.GetQuoteRequest, **_: object) -> shipping_pb2.GetQuoteResponse:
        return shipping_pb2.GetQuoteResponse(cost=SHIPPING_COST.to_proto())


@dataclass
class FakePayment:
    """Charge: captures, declines, or raises ``failure`` (a deadline, an outage, a crash)."""

    decline_reason: str = ""
    failure: BaseException | None = None
    charges: list[payment_pb2.ChargeRequest] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)

    async def Charge(
        self,
        request: payment_pb2.ChargeRequest,
        timeout: float | None = None,  # noqa: ASYNC109 - the stub's keyword: Remote passes the payment deadline
    ) -> payment_pb2.Payment:
        self.deadlines.append(timeout)
        if self.failure is not None:
            raise self.failure
        self.charges.append(request)
        status = payment_pb2.DECLINED if self.decline_reason else payment_pb2.CAPTURED
        return payment_pb2.Payment(
            order_id=request.order_id,
            transaction_id=f"txn-{request.order_id}",
            status=status,
            amount=request.amount,
            decline_reason=self.decline_reason,
        )


class FakePublisher(RedisPublisher):
    """Keeps what was published instead of appending to a Redis stream."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, str | bytes]]] = []

    async def publish(self, stream: str, fields: dict[str, str | bytes]) -> str:
        self.published.append((stream, fields))
        return f"{len(self.published)}-0"

    async def publish_envelope(self, stream: str, make: Callable[[], events_pb2.Envelope]) -> str:
        return await self.publish(stream, encode_fields(make()))

    def envelopes(self, stream: str = UPDATES) -> list[events_pb2.Envelope]:
        found = []
        for published_to, fields in self.published:
            event = fields["event"]
            assert isinstance(event, bytes), "encode_fields serializes the envelope to bytes"
            if published_to == stream:
                found.append(decode_envelope(event))
        return found


@dataclass
class Checkout:
    catalog: FakeCatalog
    payment: FakePayment
    publisher: FakePublisher
    redis: FakeRedis
    place_order: PlaceOrder


def checkout(
    prices: dict[str, Money],
    stock: dict[str, int],
    *,
    review_threshold_units: int = 10_000,
    payment_deadline: float = 3,
) -> Checkout:
    catalog, payment, publisher, fake_redis = FakeCatalog(prices, stock), FakePayment(), FakePublisher(), FakeRedis()
    remote = Remote(
        # The stubs are typed as generated multi-callables; these fakes have the methods Remote calls.
        cast("catalog_pb2_grpc.CatalogServiceAsyncStub", catalog),
        cast("shipping_pb2_grpc.ShippingServiceAsyncStub", FakeShipping()),
        cast("payment_pb2_grpc.PaymentServiceAsyncStub", payment),
        breakers_for(("catalog", "shipping", "payment"), fail_max=5, reset_timeout=30, metrics=None),
        payment_deadline,
    )
    claims = Claims(fake_redis.client(), ttl_seconds=3600, wait_seconds=0.05, takeover_after=30)
    config = SagaConfig(review_at=Money.of("USD", review_threshold_units), order_shards=1, updates_stream=UPDATES)
    saga = PlaceOrder(remote, claims, publisher, config, lambda: NOW)
    return Checkout(catalog, payment, publisher, fake_redis, saga)
