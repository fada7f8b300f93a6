"""A process serving a test service through the mesh's runtime (mesh.server:
health, middleware, the graceful stop on SIGTERM), its settings from the
environment like every context's.

Run by test_shutdown_calls as a separate process. ``test.Echo/Echo`` answers
its request after a few milliseconds; ``test.Echo/Block`` holds the event loop
for the seconds its request names, as a burst of real work would, so calls
arriving meanwhile wait in gRPC core for the server to pick them up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider

from mesh.server import App, Registration, serve
from mesh.settings import ServiceSettings, load_settings

SERVICE = "test.Echo"


async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await asyncio.sleep(0.005)
    return request


async def block(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    time.sleep(float(request.decode()))  # noqa: ASYNC251 - holding the loop is the point
    return request


def add(servicer: object, server: Any) -> None:
    methods = {"Echo": echo, "Block": block}
    handlers = {name: grpc.unary_unary_rpc_method_handler(behavior) for name, behavior in methods.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def main() -> None:
    settings = load_settings(ServiceSettings)
    app = App(name="echo", settings=settings, tracer_provider=TracerProvider())
    app.services.append(Registration(add, None, SERVICE))
    asyncio.run(serve(app))


if __name__ == "__main__":
    main()
