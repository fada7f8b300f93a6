"""The JSON the gateway answers with, as typed dicts: ``wire.py`` builds them
(checked by mypy) and ``openapi.py`` derives their JSON Schemas from the same
types, so the document describes what is sent."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import WithJsonSchema

# pydantic reads typing_extensions' TypedDict on Python 3.11 (typing's lacks what it needs).
from typing_extensions import TypedDict

OrderStatusName = Literal["PENDING", "AWAITING_REVIEW", "PAID", "SHIPPING", "SHIPPED", "SHIP_FAILED", "CANCELLED"]
STATUS_NAMES: tuple[OrderStatusName, ...] = get_args(OrderStatusName)
# RFC 3339 in UTC with milliseconds: 2026-11-30T05:01:02.123Z.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Money(TypedDict):
    currency_code: str
    units: int
    nanos: int


class Product(TypedDict):
    id: str
    name: str
    description: str
    price: Money
    stock: int
    categories: list[str]


class ProductPage(TypedDict):
    products: list[Product]
    next_page_token: str


class Address(TypedDict):
    street_address: str
    city: str
    state: str
    country: str
    zip_code: str


class OrderItem(TypedDict):
    product_id: str
    quantity: int
    unit_price: Money


class StatusChange(TypedDict):
    status: OrderStatusName
    at: Timestamp | None
    reason: str


class Order(TypedDict):
    order_id: str
    user_id: str
    status: OrderStatusName
    items: list[OrderItem]
    total: Money
    shipping_cost: Money
    address: Address
    email: str
    tracking_id: str
    failure_reason: str
    trace_id: str
    trace_url: str | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    history: list[StatusChange]


class OrderPage(TypedDict):
    orders: list[Order]
    next_page_token: str


class PlacedOrder(TypedDict):
    order_id: str
    status: OrderStatusName
    total: Money
    shipping_cost: Money
    failure_reason: str


class ProductSales(TypedDict):
    product_id: str
    units: int
    revenue: Money


class TopProducts(TypedDict):
    products: list[ProductSales]


class SalesBucket(TypedDict):
    start: Timestamp | None
    orders: int
    revenue: Money
    by_status: dict[OrderStatusName, int]


class Sales(TypedDict):
    buckets: list[SalesBucket]


class OrderSummary(TypedDict):
    order_id: str
    user_id: str
    email: str
    status: OrderStatusName
    total: Money
    created_at: Timestamp | None


class OrderSearch(TypedDict):
    orders: list[OrderSummary]
    next_page_token: str


class Violation(TypedDict):
    field: str
    description: str


class Problem(TypedDict):
    """RFC 9457, with the gRPC code and its field violations."""

    type: str
    title: str
    status: int
    detail: str
    grpc_status: str
    violations: list[Violation]


HealthStatus = Literal["ok", "ready", "not ready", "draining"]


class Health(TypedDict):
    """/healthz and /readyz: each readiness check by name (empty for liveness)."""

    status: HealthStatus
    checks: dict[str, bool]


class OrderStatusEvent(TypedDict):
    """``data:`` of an ``event: status`` message of /orders/{id}/events."""

    order_id: str
    status: OrderStatusName
    at: Timestamp | None
    reason: str
    tracking_id: str


class OperatorEvent(TypedDict):
    """``data:`` of an ``event: order`` message of /events; null where it does not apply."""

    type: Literal["placed", "status"]
    order_id: str
    user_id: str | None
    status: OrderStatusName | None
    from_status: OrderStatusName | None
    total: Money | None
    reason: str | None
    at: Timestamp | None
