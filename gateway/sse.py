"""Server-Sent Events: one order's status changes, and the operator stream of
every order event.

/orders/{id}/events sends the order's history positions as ids. The order's
own record is the truth: on connect, and whenever the feed says something
happened to the order, the gateway reads it again (GetOrder) and sends the
positions not sent yet. Duplicated, reordered or lost events (a reset) only
cause one more read, never a wrong or missing status.

/events relays every OrderPlaced and OrderStatusChanged as it is read from
the streams, with a cursor id to resume from (``gateway.feed``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway import wire
from gateway.feed import Closed, Cursor, Feed, OrderWatch, Reset
from gateway.metrics import GatewayMetrics
from gateway.params import Query
from gateway.ports import Mesh
from gateway.problems import Problem
from mesh.errors import DomainError
from ordermesh.order.v1 import order_pb2

log = logging.getLogger(__name__)
KEEPALIVE = ": keepalive\n\n"
# Codes that say the mesh is busy or away for now: the stream asks again later.
TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def message(event: str, data: object, event_id: str | None = None) -> str:
    """One SSE message; ``data`` as one line of JSON (no newline can break the framing)."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


@dataclass(frozen=True)
class StreamTimes:
    keepalive_seconds: float
    order_wait_seconds: float
    order_poll_seconds: float


class EventStreams:
    def __init__(self, mesh: Mesh, feed: Feed, times: StreamTimes, metrics: GatewayMetrics | None = None) -> None:
        self._mesh = mesh
        self._feed = feed
        self._times = times
        self._metrics = metrics

    async def order_events(self, request: Request, query: Query) -> Response:
        order_id = request.path_params["id"]
        after = _position(request.headers.get("last-event-id", ""))
        # Read once before answering: a bad id is a 400 problem, not a stream.
        first = await self._get(order_id)
        return self._streaming("order", self._order_stream(order_id, first, after))

    async def operator_events(self, request: Request, query: Query) -> Response:
        last = request.headers.get("last-event-id", "")
        # A cursor that cannot be read is older than anything kept: reset.
        after = (Cursor.parse(last) or Cursor(placed=(-1, -1))) if last else None

        async def stream() -> AsyncIterator[str]:
            # Subscribed once the response streams: a client gone before that leaves nothing behind.
            inbox = self._feed.subscribe(after)
            try:
                while True:
                    item = await inbox.get(self._times.keepalive_seconds)
                    if item is None:
                        yield KEEPALIVE
                    elif isinstance(item, Closed):
                        return
                    elif isinstance(item, Reset):
                        yield message("reset", {"reason": "events were missed; reload what is shown"})
                    else:
                        yield message("order", item.event, item.cursor.text())
            finally:
                self._feed.unsubscribe(inbox)

        return self._streaming("operator", stream())

    def _streaming(self, name: str, body: AsyncIterator[str]) -> Response:
        if self._feed.closed:
            raise Problem(503, grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down")
        return StreamingResponse(self._counted(name, body), media_type="text/event-stream", headers=HEADERS)

    async def _counted(self, name: str, body: AsyncIterator[str]) -> AsyncIterator[str]:
        gauge = self._metrics.open_streams.labels(name) if self._metrics is not None else None
        if gauge is not None:
            gauge.inc()
        try:
            async for chunk in body:
                yield chunk
        finally:
            if gauge is not None:
                gauge.dec()

    async def _get(self, order_id: str) -> order_pb2.Order | None:
        """The order; None while it is not stored yet (or the mesh is away for now)."""
        try:
            return await self._mesh.get_order(order_pb2.GetOrderRequest(order_id=order_id))
        except DomainError as error:
            if error.code == grpc.StatusCode.NOT_FOUND or error.code in TRANSIENT:
                return None
            raise Problem.of(error) from None

    async def _order_stream(self, order_id: str, order: order_pb2.Order | None, sent: int) -> AsyncIterator[str]:
        times = self._times
        give_up = time.monotonic() + times.order_wait_seconds
        watch = self._feed.watch(order_id)
        # Read again once watching: a change between the first read and now is not missed.
        watch.changed.set()
        try:
            while not watch.closed:
                if order is not None:
                    for position in range(sent + 1, len(order.history) + 1):
                        yield message("status", wire.status_event(order, position), str(position))
                    sent = max(sent, len(order.history))
                elif time.monotonic() > give_up:
                    yield message("error", Problem(404, grpc.StatusCode.NOT_FOUND, "order not found").document())
                    return
                # Until the order is stored, ask again every poll period as well.
                wait = times.keepalive_seconds if order is not None else times.order_poll_seconds
                if not await _woken(watch, wait) and order is not None:
                    yield KEEPALIVE
                    continue
                watch.changed.clear()
                try:
                    order = await self._get(watch.order_id) or order
                except Problem as problem:
                    log.warning("order stream %s: %s", watch.order_id, problem.detail)
                    return
        finally:
            self._feed.unwatch(watch)


async def _woken(watch: OrderWatch, timeout: float) -> bool:  # noqa: ASYNC109 - a wait period, not a deadline
    try:
        await asyncio.wait_for(watch.changed.wait(), timeout)
    except TimeoutError:
        return False
    return True


def _position(last_event_id: str) -> int:
    """A per-order Last-Event-ID: the last history position the client has (0: none)."""
    return int(last_event_id) if last_event_id.isdigit() and len(last_event_id) < 10 else 0
