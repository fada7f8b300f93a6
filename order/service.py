"""OrderService servicer: validate, call the domain, map to the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common.checks import Checks
from order.lifecycle import Lifecycle
from order.orders import Order
from order.queries import OrderQueries
from ordermesh.common.v1 import common_pb2
from ordermesh.order.v1 import order_pb2, order_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class OrderService(order_pb2_grpc.OrderServiceServicer):
    def __init__(self, queries: OrderQueries, lifecycle: Lifecycle) -> None:
        self._queries = queries
        self._lifecycle = lifecycle

    async def GetOrder(self, request: order_pb2.GetOrderRequest, context: Context) -> order_pb2.Order:
        check = Checks()
        check.order_id(request.order_id)
        check.raise_if_any()
        return to_proto(await self._queries.get(request.order_id))

    async def ListOrders(self, request: order_pb2.ListOrdersRequest, context: Context) -> order_pb2.ListOrdersResponse:
        check = Checks()
        check.identifier(request.user_id, "user_id")
        check.raise_if_any()
        page = await self._queries.by_user(request.user_id, request.page_size, request.page_token)
        return order_pb2.ListOrdersResponse(
            orders=[to_proto(o) for o in page.orders], next_page_token=page.next_page_token
        )

    async def CancelOrder(self, request: order_pb2.CancelOrderRequest, context: Context) -> order_pb2.Order:
        check = Checks()
        check.order_id(request.order_id)
        check.require(len(request.reason) <= 500, "reason", "must be at most 500 characters")
        check.raise_if_any()
        return to_proto(await self._lifecycle.cancel(request.order_id, request.reason))

    async def ReviewOrder(self, request: order_pb2.ReviewOrderRequest, context: Context) -> order_pb2.Order:
        check = Checks()
        check.order_id(request.order_id)
        check.identifier(request.reviewer, "reviewer")
        check.require(len(request.note) <= 500, "note", "must be at most 500 characters")
        check.raise_if_any()
        order = await self._lifecycle.review(request.order_id, request.approve, request.reviewer, request.note)
        return to_proto(order)


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def to_proto(order: Order) -> order_pb2.Order:
    a = order.address
    return order_pb2.Order(
        order_id=order.order_id,
        user_id=order.user_id,
        status=common_pb2.OrderStatus.Value(order.status.value),
        items=[
            common_pb2.OrderItem(product_id=i.product_id, quantity=i.quantity, unit_price=i.unit_price.to_proto())
            for i in order.items
        ],
        total=order.total.to_proto(),
        shipping_cost=order.shipping_cost.to_proto(),
        address=common_pb2.Address(
            street_address=a.street_address, city=a.city, state=a.state, country=a.country, zip_code=a.zip_code
        ),
        email=order.email,
        tracking_id=order.tracking_id,
        failure_reason=order.failure_reason,
        trace_id=order.trace_id,
        created_at=_timestamp(order.created_at),
        updated_at=_timestamp(order.updated_at),
        history=[
            order_pb2.StatusChange(
                status=common_pb2.OrderStatus.Value(c.status.value), at=_timestamp(c.at), reason=c.reason
            )
            for c in order.history
        ],
    )
