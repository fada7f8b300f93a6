"""CheckoutService servicer.

PlaceOrder arrives with the saga (the order-pipeline issue); until then it
answers UNIMPLEMENTED while the process already serves health, reflection and
metrics.
"""

from __future__ import annotations

from typing import Any

import grpc

from mesh.errors import Unimplemented
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class CheckoutService(checkout_pb2_grpc.CheckoutServiceServicer):
    async def PlaceOrder(
        self, request: checkout_pb2.PlaceOrderRequest, context: Context
    ) -> checkout_pb2.PlaceOrderResponse:
        raise Unimplemented("PlaceOrder is not implemented yet")
