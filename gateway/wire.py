"""The mesh's messages as the gateway's JSON: snake_case proto names, money as
integer units and nanos, times as RFC 3339 in UTC (null when unset), statuses
by name. The card number is in no message read here, so no answer can carry it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from google.protobuf.message import Message

from gateway import schemas
from ordermesh.analytics.v1 import analytics_pb2
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2
from ordermesh.order.v1 import order_pb2


def money(value: common_pb2.Money) -> schemas.Money:
    return {"currency_code": value.currency_code, "units": value.units, "nanos": value.nanos}


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def time_of(message: Message, field: str) -> str | None:
    """``message.<field>`` (a Timestamp) in RFC 3339, or None when unset."""
    if not message.HasField(field):
        return None
    return rfc3339(getattr(message, field).ToDatetime(tzinfo=UTC))


def status_name(value: common_pb2.OrderStatus.ValueType) -> schemas.OrderStatusName:
    return cast(schemas.OrderStatusName, common_pb2.OrderStatus.Name(value))


def product(value: catalog_pb2.Product) -> schemas.Product:
    return {
        "id": value.id,
        "name": value.name,
        "description": value.description,
        "price": money(value.price),
        "stock": value.stock,
        "categories": list(value.categories),
    }


def product_page(value: catalog_pb2.ListProductsResponse) -> schemas.ProductPage:
    return {"products": [product(p) for p in value.products], "next_page_token": value.next_page_token}


def order(value: order_pb2.Order, jaeger_ui_url: str) -> schemas.Order:
    a = value.address
    trace_url = f"{jaeger_ui_url.rstrip('/')}/trace/{value.trace_id}" if jaeger_ui_url and value.trace_id else None
    return {
        "order_id": value.order_id,
        "user_id": value.user_id,
        "status": status_name(value.status),
        "items": [
            {"product_id": i.product_id, "quantity": i.quantity, "unit_price": money(i.unit_price)} for i in value.items
        ],
        "total": money(value.total),
        "shipping_cost": money(value.shipping_cost),
        "address": {
            "street_address": a.street_address,
            "city": a.city,
            "state": a.state,
            "country": a.country,
            "zip_code": a.zip_code,
        },
        "email": value.email,
        "tracking_id": value.tracking_id,
        "failure_reason": value.failure_reason,
        "trace_id": value.trace_id,
        "trace_url": trace_url,
        "created_at": time_of(value, "created_at"),
        "updated_at": time_of(value, "updated_at"),
        "history": [
            {"status": status_name(c.status), "at": time_of(c, "at"), "reason": c.reason} for c in value.history
        ],
    }


def order_page(value: order_pb2.ListOrdersResponse, jaeger_ui_url: str) -> schemas.OrderPage:
    return {"orders": [order(o, jaeger_ui_url) for o in value.orders], "next_page_token": value.next_page_token}


def placed_order(value: checkout_pb2.PlaceOrderResponse) -> schemas.PlacedOrder:
    return {
        "order_id": value.order_id,
        "status": status_name(value.status),
        "total": money(value.total),
        "shipping_cost": money(value.shipping_cost),
        "failure_reason": value.failure_reason,
    }


def top_products(value: analytics_pb2.TopProductsResponse) -> schemas.TopProducts:
    return {
        "products": [
            {"product_id": p.product_id, "units": p.units, "revenue": money(p.revenue)} for p in value.products
        ]
    }


def sales(value: analytics_pb2.SalesSummaryResponse) -> schemas.Sales:
    return {
        "buckets": [
            {
                "start": time_of(b, "start"),
                "orders": b.orders,
                "revenue": money(b.revenue),
                "by_status": {status_name(s.status): s.orders for s in b.by_status},
            }
            for b in value.buckets
        ]
    }


def order_search(value: analytics_pb2.SearchOrdersResponse) -> schemas.OrderSearch:
    return {
        "orders": [
            {
                "order_id": o.order_id,
                "user_id": o.user_id,
                "email": o.email,
                "status": status_name(o.status),
                "total": money(o.total),
                "created_at": time_of(o, "created_at"),
            }
            for o in value.orders
        ],
        "next_page_token": value.next_page_token,
    }


def status_event(value: order_pb2.Order, position: int) -> schemas.OrderStatusEvent:
    """The order's ``position``-th status change (1-based) as an SSE ``data:``."""
    change = value.history[position - 1]
    return {
        "order_id": value.order_id,
        "status": status_name(change.status),
        "at": time_of(change, "at"),
        "reason": change.reason,
        "tracking_id": value.tracking_id,
    }


def operator_event(envelope: events_pb2.Envelope) -> schemas.OperatorEvent | None:
    """An OrderPlaced or OrderStatusChanged event for the operator stream; None for any other."""
    kind = envelope.WhichOneof("payload")
    at = time_of(envelope, "occurred_at")
    if kind == "order_placed":
        placed = envelope.order_placed
        initial = placed.draft.initial_status
        return {
            "type": "placed",
            "order_id": envelope.order_id,
            "user_id": placed.draft.user_id,
            "status": status_name(initial) if initial else None,
            "from_status": None,
            "total": money(placed.total),
            "reason": None,
            "at": at,
        }
    if kind == "order_status_changed":
        changed = envelope.order_status_changed
        return {
            "type": "status",
            "order_id": envelope.order_id,
            "user_id": None,
            "status": status_name(changed.to_status),
            "from_status": status_name(changed.from_status) if changed.from_status else None,
            "total": None,
            "reason": changed.reason,
            "at": at,
        }
    return None
