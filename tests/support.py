"""Helpers shared by the test suites: run an App in-process on a free port."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import grpc

from mesh.bus.redis_streams import StreamConsumer
from mesh.server import App, Server
from order.relay import OutboxRelay


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[tuple[Server, grpc.aio.Channel]]:
    """Start ``app`` (its settings should ask for port 0) and yield it with a channel."""
    server = Server(app)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield server, channel
    finally:
        await channel.close(grace=None)
        await server.stop()


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], within: float = 10.0, what: str = "condition", every: float = 0.02
) -> None:
    """Poll ``check`` (a coroutine function or a plain one) until it is true or
    the deadline passes (no blind sleeps)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if await result if inspect.isawaitable(result) else result:
            return
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def settle_order_pipeline(consumers: Mapping[str, StreamConsumer], relay: OutboxRelay) -> None:
    """The order context's pipeline, run in this task until quiet: rows and
    status events, the outbox, then the dispatcher and the compensator (three
    rounds: each can make work for the ones before it)."""
    for _ in range(3):
        for name in ("placed", "updates"):
            await consumers[name].run_until_idle()
        await relay.relay_once()
        for name in ("dispatcher", "compensator"):
            await consumers[name].run_until_idle()
        await relay.relay_once()
