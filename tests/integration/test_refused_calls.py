"""A refused call (bad input, short of stock, a dependency down, a bug) is
answered with its status and leaves nothing behind for the garbage collector.

grpc.aio's ``context.abort()`` keeps its AbortError on the call's state, whose
traceback holds the servicer context, which holds the state: every aborted call
was a reference cycle pinning its gRPC core call until a full collection, and
a hot-product storm (hundreds of refusals a second) grew the heap by as much.
The middleware answers with the context's code instead; this test counts what
a collection finds after refused calls, with a real server and client.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from mesh.errors import FailedPrecondition, PreconditionViolation
from mesh.metrics import ServerMetrics
from mesh.middleware import Middleware, WrappingServer

SERVICE = "test.Refuse"
CALLS = 200


async def short(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise FailedPrecondition("out of stock", [PreconditionViolation("STOCK", "sku-1", "0 left")])


async def down(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise ConnectionError("redis went away")


async def bug(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise RuntimeError("a bug")


async def unwritten(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise NotImplementedError


def _add(server: Any) -> None:
    methods = {"Short": short, "Down": down, "Bug": bug, "Unwritten": unwritten}
    handlers = {name: grpc.unary_unary_rpc_method_handler(behavior) for name, behavior in methods.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    middleware = Middleware(TracerProvider().get_tracer("test"), ServerMetrics(CollectorRegistry()))
    _add(WrappingServer(server, middleware))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


async def _refusal(channel: grpc.aio.Channel, method: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(f"/{SERVICE}/{method}", None, None)(b"x", timeout=5)
    return raised.value


@pytest.mark.parametrize(
    ("method", "code", "details"),
    [
        ("Short", grpc.StatusCode.FAILED_PRECONDITION, "out of stock"),
        ("Down", grpc.StatusCode.UNAVAILABLE, "network unavailable, retry"),
        ("Bug", grpc.StatusCode.INTERNAL, "internal error"),
        ("Unwritten", grpc.StatusCode.UNIMPLEMENTED, f"/{SERVICE}/Unwritten is not implemented yet"),
    ],
)
async def test_a_refusal_is_answered_with_its_status(
    channel: grpc.aio.Channel, method: str, code: grpc.StatusCode, details: str
) -> None:
    error = await _refusal(channel, method)
    assert error.code() is code
    assert (error.details() or "").startswith(details)
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None and status.code == code.value[0]


async def test_the_rich_details_reach_the_caller(channel: grpc.aio.Channel) -> None:
    status = rpc_status.from_call(await _refusal(channel, "Short"))  # type: ignore[arg-type]
    assert status is not None
    failure = error_details_pb2.PreconditionFailure()
    assert status.details[0].Unpack(failure)
    assert [(v.type, v.subject) for v in failure.violations] == [("STOCK", "sku-1")]


async def test_refused_calls_leave_no_cycles(channel: grpc.aio.Channel) -> None:
    for method in ("Short", "Down"):  # one warm-up each: first-call caches are not garbage
        await _refusal(channel, method)
    gc.collect()
    gc.disable()
    try:
        for n in range(CALLS):
            await _refusal(channel, "Short" if n % 2 else "Down")
        await asyncio.sleep(0.1)  # the server's last batch completes
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kinds = Counter(type(thing).__name__ for thing in gc.garbage)
        frames = Counter(thing.f_code.co_qualname for thing in gc.garbage if isinstance(thing, FrameType))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    # With abort() each refusal left an AbortError, its traceback and frames
    # (the middleware's among them), the servicer context and the call's state.
    # (The client's AioRpcErrors are cycles of their own, and grpc makes a small
    # one per call of its handler lookup: neither holds a server call.)
    assert kinds["AbortError"] == 0, kinds.most_common(12)
    assert kinds["_ServicerContext"] == 0, kinds.most_common(12)
    assert kinds["RPCState"] == 0, kinds.most_common(12)
    assert not [name for name in frames if "mapped" in name or "traced" in name], frames
