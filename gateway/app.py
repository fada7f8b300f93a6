"""The ASGI app: the route table as Starlette routes, the console's assets,
/openapi.json, problem documents for every error, and the middleware."""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles

from gateway.api import IDEMPOTENCY_KEY
from gateway.metrics import GatewayMetrics
from gateway.middleware import Observed
from gateway.problems import Problem
from gateway.routes import Operation

# HTTP errors Starlette raises itself (no route, a wrong method), as problems.
STARLETTE_CODES = {404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED}


def build_app(
    operations: list[Operation],
    *,
    openapi: dict[str, Any],
    static: StaticFiles,
    tracer: trace.Tracer,
    metrics: GatewayMetrics,
    cors_origins: list[str],
) -> Starlette:
    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi)

    routes: list[BaseRoute] = [
        Route(op.path, op.endpoint(), methods=[op.method], name=op.operation_id) for op in operations
    ]
    routes += [Route("/openapi.json", openapi_json, methods=["GET"]), Mount("/static", static, name="static")]
    middleware = [Middleware(Observed, tracer=tracer, metrics=metrics)]
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Content-Type", IDEMPOTENCY_KEY, "Last-Event-ID", "traceparent", "tracestate"],
                expose_headers=[IDEMPOTENCY_KEY, "Location", "Retry-After"],
            )
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_problem, Exception: _internal_problem},
    )
    # "/api/orders/" is not "/api/orders": an unknown path is a 404 problem, never a redirect.
    assert isinstance(app.router, Router)
    app.router.redirect_slashes = False
    return app


async def _http_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = STARLETTE_CODES.get(error.status_code, grpc.StatusCode.INVALID_ARGUMENT)
    detail = "no such path" if error.status_code == 404 else str(error.detail)
    problem = Problem(error.status_code, code, detail, headers=error.headers)
    return problem.response()


async def _internal_problem(request: Request, error: Exception) -> Response:
    return Problem.internal().response()
