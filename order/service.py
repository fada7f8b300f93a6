"""OrderService servicer.

The order records arrive with the order pipeline; until then every method
answers UNIMPLEMENTED while the process already serves health, reflection and
metrics.
"""

from __future__ import annotations

from typing import Any

import grpc

from mesh.errors import Unimplemented
from ordermesh.order.v1 import order_pb2, order_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class OrderService(order_pb2_grpc.OrderServiceServicer):
    async def GetOrder(self, request: order_pb2.GetOrderRequest, context: Context) -> order_pb2.Order:
        raise Unimplemented("GetOrder is not implemented yet")

    async def ListOrders(self, request: order_pb2.ListOrdersRequest, context: Context) -> order_pb2.ListOrdersResponse:
        raise Unimplemented("ListOrders is not implemented yet")

    async def CancelOrder(self, request: order_pb2.CancelOrderRequest, context: Context) -> order_pb2.Order:
        raise Unimplemented("CancelOrder is not implemented yet")

    async def ReviewOrder(self, request: order_pb2.ReviewOrderRequest, context: Context) -> order_pb2.Order:
        raise Unimplemented("ReviewOrder is not implemented yet")
