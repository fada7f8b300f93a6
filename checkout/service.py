"""CheckoutService servicer: validate, call the saga, map to the wire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import grpc

from checkout.metrics import CheckoutMetrics
from checkout.saga import PlaceOrder
from common.checks import Checks
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class CheckoutService(checkout_pb2_grpc.CheckoutServiceServicer):
    def __init__(
        self,
        place_order: PlaceOrder,
        today: Callable[[], date],
        *,
        max_lines: int,
        max_quantity: int,
        metrics: CheckoutMetrics | None = None,
    ) -> None:
        self._place_order = place_order
        self._today = today
        self._max_lines = max_lines
        self._max_quantity = max_quantity
        self._metrics = metrics

    async def PlaceOrder(
        self, request: checkout_pb2.PlaceOrderRequest, context: Context
    ) -> checkout_pb2.PlaceOrderResponse:
        if self._metrics is None:
            return await self._place(request)
        try:
            response = await self._place(request)
        except Exception as error:  # a cancelled call (the client left) is a BaseException: not an answer
            self._metrics.failed(error)
            raise
        self._metrics.answered(response)
        return response

    async def _place(self, request: checkout_pb2.PlaceOrderRequest) -> checkout_pb2.PlaceOrderResponse:
        check = Checks()
        check.identifier(request.request_id, "request_id")
        check.identifier(request.user_id, "user_id")
        check.line_items(request.items, max_lines=self._max_lines, max_quantity=self._max_quantity)
        if check.require(request.HasField("address"), "address", "is required"):
            check.require(bool(request.address.country.strip()), "address.country", "is required")
            check.require(bool(request.address.zip_code.strip()), "address.zip_code", "is required")
            check.address(request.address)
        check.require("@" in request.email, "email", "must be an email address")
        check.text(request.email, "email", 200)
        if check.require(request.HasField("credit_card"), "credit_card", "is required"):
            check.card(request.credit_card, self._today())
        check.raise_if_any()
        return await self._place_order(request)
