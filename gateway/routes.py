"""The route table: every endpoint once, with what it reads and answers.

The app is built from it (``gateway.app``) and so is the OpenAPI document
(``gateway.openapi``): a parameter, a body or an answer described there is the
one the handler was given, so the document cannot drift from the code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from gateway import schemas
from gateway.api import IDEMPOTENCY_KEY, KEY_PATTERN, Api
from gateway.bodies import CancelBody, PlaceOrderBody, ReviewBody
from gateway.health import Health
from gateway.pages import Pages
from gateway.params import Param, Query, page
from gateway.problems import Problem
from gateway.sse import EventStreams
from mesh.errors import DomainError

log = logging.getLogger(__name__)
Handler = Callable[[Request, Query], Awaitable[Response]]
JSON, PROBLEM, SSE, HTML = "application/json", "application/problem+json", "text/event-stream", "text/html"
# The problems any call of the mesh may answer besides its own.
MESH_PROBLEMS = (429, 500, 503, 504)


@dataclass(frozen=True)
class Answer:
    status: int
    description: str
    schema: type | None = None  # a schemas.* TypedDict, for JSON answers
    media_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    handler: Handler
    answer: Answer
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    problems: tuple[int, ...] = ()
    headers: tuple[Param, ...] = ()  # request headers, documented (read by the handler)
    others: tuple[Answer, ...] = ()  # answers besides ``answer`` that are not problems

    def endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        """The handler with its parameters read and every error a problem document."""

        async def run(request: Request) -> Response:
            try:
                return await self.handler(request, Query.read(request.query_params, self.params))
            except Problem as problem:
                return problem.response()
            except DomainError as error:
                return Problem.of(error).response()
            except Exception:
                log.exception("%s %s failed", self.method, self.path)
                return Problem.internal().response()

        return run


def _json(status: int, description: str, schema: type, **headers: str) -> Answer:
    return Answer(status, description, schema, headers=headers)


def operations(api: Api, streams: EventStreams, health: Health, pages: Pages) -> list[Operation]:
    order_status = Param("status", "enum", "only orders in this status", values=schemas.STATUS_NAMES)
    since = Param("from", "date-time", "from this time on (RFC 3339)")
    until = Param("to", "date-time", "before this time (RFC 3339)")
    last_event_id = Param("Last-Event-ID", "string", "resume after this event id (browsers send it on reconnect)")
    order_json = _json(200, "the order as it is now", schemas.Order)
    return [
        Operation(
            "GET",
            "/api/products",
            "listProducts",
            "The catalog, a page at a time",
            "catalog",
            api.list_products,
            _json(200, "one page of products", schemas.ProductPage),
            page("products"),
        ),
        Operation(
            "GET",
            "/api/products/{id}",
            "getProduct",
            "One product",
            "catalog",
            api.get_product,
            _json(200, "the product", schemas.Product),
            problems=(400, 404),
        ),
        Operation(
            "POST",
            "/api/orders",
            "placeOrder",
            "Place an order (checkout's PlaceOrder)",
            "orders",
            api.place_order,
            _json(
                201,
                "the order was placed (or this is the answer to the same request with the same key)",
                schemas.PlacedOrder,
                Location="the order's URL",
                **{IDEMPOTENCY_KEY: "the key the order was placed with"},
            ),
            body=PlaceOrderBody,
            problems=(400, 404, 409),
            headers=(
                Param(
                    IDEMPOTENCY_KEY,
                    "string",
                    "1-64 of A-Z, a-z, 0-9, _ and -; the same key and body answer "
                    "the same, another body with it is 409; generated when absent",
                    pattern=KEY_PATTERN.pattern,
                ),
            ),
        ),
        Operation(
            "GET",
            "/api/orders",
            "listOrders",
            "One user's orders, newest first",
            "orders",
            api.list_orders,
            _json(200, "one page of orders", schemas.OrderPage),
            (Param("user_id", "string", "whose orders", required=True), *page("orders")),
            problems=(400,),
        ),
        Operation(
            "GET",
            "/api/orders/{id}",
            "getOrder",
            "One order",
            "orders",
            api.get_order,
            order_json,
            problems=(400, 404),
        ),
        Operation(
            "POST",
            "/api/orders/{id}/cancel",
            "cancelOrder",
            "Cancel an order",
            "orders",
            api.cancel_order,
            order_json,
            body=CancelBody,
            problems=(400, 404, 409),
        ),
        Operation(
            "POST",
            "/api/orders/{id}/review",
            "reviewOrder",
            "Approve or reject an order waiting for review",
            "orders",
            api.review_order,
            order_json,
            body=ReviewBody,
            problems=(400, 404, 409),
        ),
        Operation(
            "GET",
            "/api/analytics/top-products",
            "topProducts",
            "The best-selling products of a day",
            "analytics",
            api.top_products,
            _json(200, "best first", schemas.TopProducts),
            (
                Param("day", "date", "the day (UTC), YYYY-MM-DD; default today"),
                Param("limit", "integer", "how many (default 10)", minimum=1),
            ),
            problems=(400,),
        ),
        Operation(
            "GET",
            "/api/analytics/sales",
            "salesSummary",
            "Orders and revenue per hour or day",
            "analytics",
            api.sales,
            _json(200, "one bucket per hour or day", schemas.Sales),
            (
                Param("from", "date-time", "the first bucket's time (RFC 3339)", required=True),
                Param("to", "date-time", "the end (RFC 3339)", required=True),
                Param("bucket", "enum", "HOUR (default) or DAY", values=("HOUR", "DAY")),
            ),
            problems=(400,),
        ),
        Operation(
            "GET",
            "/api/analytics/orders",
            "searchOrders",
            "Orders of every shard, by email, user or status",
            "analytics",
            api.search_orders,
            _json(200, "one page of orders", schemas.OrderSearch),
            (
                Param("email", "string", "only this email's orders"),
                Param("user_id", "string", "only this user's orders"),
                order_status,
                since,
                until,
                *page("orders"),
            ),
            problems=(400,),
        ),
        Operation(
            "GET",
            "/orders/{id}/events",
            "orderEvents",
            "One order's status changes (Server-Sent Events)",
            "events",
            streams.order_events,
            Answer(
                200,
                "`event: status` per history position (`id:` the position), then live; "
                "`event: error` if the order is not stored within a minute",
                media_type=SSE,
            ),
            problems=(400,),
            headers=(last_event_id,),
        ),
        Operation(
            "GET",
            "/events",
            "operatorEvents",
            "Every order event (Server-Sent Events)",
            "events",
            streams.operator_events,
            Answer(
                200,
                "`event: order` per OrderPlaced and OrderStatusChanged (`id:` a cursor); "
                "`event: reset` when events were missed",
                media_type=SSE,
            ),
            headers=(last_event_id,),
        ),
        Operation(
            "GET",
            "/healthz",
            "liveness",
            "Liveness: the process answers",
            "operations",
            health.healthz,
            _json(200, "alive", schemas.Health),
        ),
        Operation(
            "GET",
            "/readyz",
            "readiness",
            "Readiness: Redis and the mesh answer, and not stopping",
            "operations",
            health.readyz,
            _json(200, "ready", schemas.Health),
            others=(_json(503, "not ready, or stopping (`draining`)", schemas.Health),),
        ),
        Operation(
            "GET",
            "/",
            "home",
            "The console's home: redirects to /products",
            "console",
            pages.home,
            Answer(307, "to /products", media_type="", headers={"Location": "/products"}),
        ),
        *(
            Operation(
                "GET",
                path,
                f"{name}Page",
                f"The console's {name} page",
                "console",
                pages.page(name),
                Answer(200, "the page", media_type=HTML),
                problems=(404,),
            )
            for path, name in (
                ("/products", "products"),
                ("/orders", "orders"),
                ("/orders/{id}", "order"),
                ("/dashboard", "dashboard"),
                ("/review", "review"),
            )
        ),
    ]
