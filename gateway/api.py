"""The JSON API's handlers: read the request, call the mesh once, answer its
message as JSON. Errors are raised (``Problem``, ``DomainError``) and answered
as problem documents by the route wrapper (``gateway.routes``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway import wire
from gateway.bodies import CancelBody, PlaceOrderBody, ReviewBody, read_body
from gateway.params import Query
from gateway.ports import Mesh
from gateway.problems import Problem
from mesh.errors import DomainError
from ordermesh.analytics.v1 import analytics_pb2
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.common.v1 import common_pb2
from ordermesh.order.v1 import order_pb2

IDEMPOTENCY_KEY = "Idempotency-Key"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_TOP = 10


class Api:
    def __init__(self, mesh: Mesh, *, jaeger_ui_url: str, max_body_bytes: int, today: Callable[[], date]) -> None:
        self._mesh = mesh
        self._jaeger = jaeger_ui_url
        self._max_body = max_body_bytes
        self._today = today

    async def list_products(self, request: Request, query: Query) -> JSONResponse:
        answer = await self._mesh.list_products(
            catalog_pb2.ListProductsRequest(page_size=query.integer("page_size"), page_token=query.text("page_token"))
        )
        return JSONResponse(wire.product_page(answer))

    async def get_product(self, request: Request, query: Query) -> JSONResponse:
        answer = await self._mesh.get_product(catalog_pb2.GetProductRequest(id=request.path_params["id"]))
        return JSONResponse(wire.product(answer))

    async def place_order(self, request: Request, query: Query) -> JSONResponse:
        key = request.headers.get(IDEMPOTENCY_KEY) or uuid.uuid4().hex
        # Every answer names the key, failures too: a client whose outcome is
        # unknown (a 503, a timeout) retries with it and is never charged twice.
        if not KEY_PATTERN.match(key):
            raise Problem.invalid([{"field": IDEMPOTENCY_KEY, "description": "must be 1-64 of A-Z, a-z, 0-9, _, -"}])
        try:
            body = await read_body(request, PlaceOrderBody, self._max_body)
            answer = await self._mesh.place_order(_place_order_request(key, body))
        except Problem as problem:
            problem.headers[IDEMPOTENCY_KEY] = key
            raise
        except DomainError as error:
            raise _keyed(Problem.of(error), key) from None
        location = f"/api/orders/{answer.order_id}"
        return JSONResponse(wire.placed_order(answer), 201, headers={IDEMPOTENCY_KEY: key, "Location": location})

    async def list_orders(self, request: Request, query: Query) -> JSONResponse:
        answer = await self._mesh.list_orders(
            order_pb2.ListOrdersRequest(
                user_id=query.text("user_id"),
                page_size=query.integer("page_size"),
                page_token=query.text("page_token"),
            )
        )
        return JSONResponse(wire.order_page(answer, self._jaeger))

    async def get_order(self, request: Request, query: Query) -> JSONResponse:
        answer = await self._mesh.get_order(order_pb2.GetOrderRequest(order_id=request.path_params["id"]))
        return JSONResponse(wire.order(answer, self._jaeger))

    async def cancel_order(self, request: Request, query: Query) -> JSONResponse:
        body = await read_body(request, CancelBody, self._max_body)
        answer = await self._mesh.cancel_order(
            order_pb2.CancelOrderRequest(order_id=request.path_params["id"], reason=body.reason)
        )
        return JSONResponse(wire.order(answer, self._jaeger))

    async def review_order(self, request: Request, query: Query) -> JSONResponse:
        body = await read_body(request, ReviewBody, self._max_body)
        answer = await self._mesh.review_order(
            order_pb2.ReviewOrderRequest(
                order_id=request.path_params["id"], approve=body.approve, reviewer=body.reviewer, note=body.note
            )
        )
        return JSONResponse(wire.order(answer, self._jaeger))

    async def top_products(self, request: Request, query: Query) -> JSONResponse:
        day = query.day("day") or self._today()
        answer = await self._mesh.top_products(
            analytics_pb2.TopProductsRequest(day=day.isoformat(), limit=query.integer("limit", DEFAULT_TOP))
        )
        return JSONResponse(wire.top_products(answer))

    async def sales(self, request: Request, query: Query) -> JSONResponse:
        fields: dict[str, Any] = {"bucket": analytics_pb2.Bucket.Value(query.text("bucket", "HOUR"))}
        # ``from`` is a keyword: the message is built from keywords by name.
        for name in ("from", "to"):
            if (at := query.time(name)) is not None:
                fields[name] = at
        answer = await self._mesh.sales_summary(analytics_pb2.SalesSummaryRequest(**fields))
        return JSONResponse(wire.sales(answer))

    async def search_orders(self, request: Request, query: Query) -> JSONResponse:
        status = query.text("status")
        fields: dict[str, Any] = {
            "email": query.text("email"),
            "user_id": query.text("user_id"),
            "status": common_pb2.OrderStatus.Value(status) if status else common_pb2.ORDER_STATUS_UNSPECIFIED,
            "page_size": query.integer("page_size"),
            "page_token": query.text("page_token"),
        }
        for name in ("from", "to"):
            if (at := query.time(name)) is not None:
                fields[name] = at
        answer = await self._mesh.search_orders(analytics_pb2.SearchOrdersRequest(**fields))
        return JSONResponse(wire.order_search(answer))


def _keyed(problem: Problem, key: str) -> Problem:
    """Checkout names the key ``request_id``; over HTTP it is the header."""
    problem.headers[IDEMPOTENCY_KEY] = key
    for violation in problem.violations:
        if violation["field"] == "request_id":
            violation["field"] = IDEMPOTENCY_KEY
    return problem


def _place_order_request(key: str, body: PlaceOrderBody) -> checkout_pb2.PlaceOrderRequest:
    card = body.credit_card
    return checkout_pb2.PlaceOrderRequest(
        request_id=key,
        user_id=body.user_id,
        items=[common_pb2.LineItem(product_id=i.product_id, quantity=i.quantity) for i in body.items],
        address=common_pb2.Address(**body.address.model_dump()),
        email=body.email,
        credit_card=common_pb2.CreditCard(
            number=card.number,
            cvv=card.cvv,
            expiration_year=card.expiration_year,
            expiration_month=card.expiration_month,
        ),
    )
