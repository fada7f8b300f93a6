"""Order rows and domain objects, both ways (SQL columns <-> ``order.orders``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mesh.db import as_utc
from mesh.money import NANOS_PER_UNIT, Money
from order.orders import Address, Change, Item, Order
from order.state import Status


def currency_of(rows: Sequence[Any], order_id: str) -> str:
    return next(str(r.currency) for r in rows if r.order_id == order_id)


def order_row(o: Order) -> dict[str, Any]:
    return {
        "order_id": o.order_id,
        "user_id": o.user_id,
        "request_id": o.request_id,
        "status": o.status.value,
        "currency": o.total.currency,
        "total_units": o.total.nanos_total // NANOS_PER_UNIT,
        "total_nanos": o.total.nanos_total % NANOS_PER_UNIT,
        "shipping_units": o.shipping_cost.nanos_total // NANOS_PER_UNIT,
        "shipping_nanos": o.shipping_cost.nanos_total % NANOS_PER_UNIT,
        "street_address": o.address.street_address,
        "city": o.address.city,
        "state": o.address.state,
        "country": o.address.country,
        "zip_code": o.address.zip_code,
        "email": o.email,
        "tracking_id": o.tracking_id,
        "failure_reason": o.failure_reason,
        "trace_id": o.trace_id,
        "ship_attempts": 0,
        "created_at": o.created_at,
        "updated_at": o.created_at,
    }


def item_row(order_id: str, line: int, item: Item) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "line": line,
        "product_id": item.product_id,
        "quantity": item.quantity,
        "unit_units": item.unit_price.nanos_total // NANOS_PER_UNIT,
        "unit_nanos": item.unit_price.nanos_total % NANOS_PER_UNIT,
    }


def order_from(r: Any, items: tuple[Item, ...], history: tuple[Change, ...]) -> Order:
    return Order(
        order_id=r.order_id,
        user_id=r.user_id,
        request_id=r.request_id,
        status=Status(r.status),
        items=items,
        total=Money.of(r.currency, r.total_units, r.total_nanos),
        shipping_cost=Money.of(r.currency, r.shipping_units, r.shipping_nanos),
        address=Address(r.street_address, r.city, r.state, r.country, r.zip_code),
        email=r.email,
        trace_id=r.trace_id,
        created_at=as_utc(r.created_at),
        updated_at=as_utc(r.updated_at),
        tracking_id=r.tracking_id,
        failure_reason=r.failure_reason,
        ship_attempts=r.ship_attempts,
        history=history,
    )
