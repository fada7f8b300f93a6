"""The SSE streams over fake stubs and an in-process feed: history positions as
ids, Last-Event-ID resume, live changes read back from the order, waiting for
an order not stored yet, and the operator stream's cursor, reset and close."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import StreamingResponse

from gateway.feed import Feed
from gateway.params import Query
from gateway.problems import Problem
from gateway.sse import EventStreams, StreamTimes
from mesh.errors import InvalidArgument, NotFound
from tests.support import eventually
from tests.unit.gateway_fakes import FakeMesh, default_mesh, operator_event, order

TIMES = StreamTimes(keepalive_seconds=0.05, order_wait_seconds=0.3, order_poll_seconds=0.01)
NO_QUERY = Query({})


def request(path_id: str = "", last_event_id: str = "") -> Request:
    headers = [(b"last-event-id", last_event_id.encode())] if last_event_id else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "path_params": {"id": path_id}})


def streams(mesh: FakeMesh, feed: Feed) -> EventStreams:
    return EventStreams(mesh.remote(), feed, TIMES)


class Reader:
    """Parses an SSE body as it arrives."""

    def __init__(self, response: Any) -> None:
        assert isinstance(response, StreamingResponse)
        assert response.media_type == "text/event-stream"
        self._body: Any = response.body_iterator

    async def next(self) -> dict[str, Any]:
        """The next message (comments are skipped); {} when the stream ended."""
        return await asyncio.wait_for(self._next(), 5)

    async def _next(self) -> dict[str, Any]:
        while True:
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                return {}
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            if text.startswith(":"):
                continue
            fields = dict(line.split(": ", 1) for line in text.strip().splitlines())
            return {**fields, "data": json.loads(fields["data"])}

    async def close(self) -> None:
        await self._body.aclose()


async def test_an_order_stream_sends_the_history_then_each_new_status_read_back() -> None:
    mesh, feed = default_mesh(), Feed(10, 10)
    reader = Reader(await streams(mesh, feed).order_events(request("o0-abc"), NO_QUERY))
    first = await reader.next()
    assert (first["event"], first["id"], first["data"]["status"]) == ("status", "1", "PENDING")
    assert set(first["data"]) == {"order_id", "status", "at", "reason", "tracking_id"}
    mesh.order.answers["GetOrder"] = order(statuses=("PENDING", "PAID", "SHIPPING"))
    feed.publish("status", (5, 0), "o0-abc", None)
    assert [(m["id"], m["data"]["status"]) for m in [await reader.next(), await reader.next()]] == [
        ("2", "PAID"),
        ("3", "SHIPPING"),
    ]
    # A duplicate (or a reordered) event reads the order again and sends nothing twice.
    feed.publish("status", (6, 0), "o0-abc", None)
    mesh.order.answers["GetOrder"] = order(statuses=("PENDING", "PAID", "SHIPPING", "SHIPPED"))
    feed.publish("status", (7, 0), "o0-abc", None)
    assert (await reader.next())["id"] == "4"
    feed.close()
    assert await reader.next() == {}
    assert feed.subscribers == 0


async def test_a_reconnect_with_last_event_id_gets_only_later_positions() -> None:
    mesh, feed = default_mesh(), Feed(10, 10)
    mesh.order.answers["GetOrder"] = order(statuses=("PENDING", "PAID", "SHIPPING", "SHIPPED"))
    reader = Reader(await streams(mesh, feed).order_events(request("o0-abc", last_event_id="2"), NO_QUERY))
    assert [(await reader.next())["id"], (await reader.next())["id"]] == ["3", "4"]
    await reader.close()


async def test_an_order_not_stored_yet_is_waited_for_then_given_up_on() -> None:
    mesh, feed = default_mesh(), Feed(10, 10)
    mesh.order.answers["GetOrder"] = NotFound("order", "o0-new")
    sse = streams(mesh, feed)
    reader = Reader(await sse.order_events(request("o0-new"), NO_QUERY))
    mesh.order.answers["GetOrder"] = order("o0-new")
    assert (await reader.next())["data"]["order_id"] == "o0-new"  # polled: no event needed
    await reader.close()

    mesh.order.answers["GetOrder"] = NotFound("order", "o0-never")
    reader = Reader(await sse.order_events(request("o0-never"), NO_QUERY))
    gave_up = await reader.next()
    assert gave_up["event"] == "error"
    assert gave_up["data"]["status"] == 404
    assert await reader.next() == {}


async def test_a_bad_order_id_is_a_problem_before_any_stream() -> None:
    mesh, feed = default_mesh(), Feed(10, 10)
    mesh.order.answers["GetOrder"] = InvalidArgument.one("order_id", "must be 1-64 characters")
    with pytest.raises(Problem) as raised:
        await streams(mesh, feed).order_events(request("bad id"), NO_QUERY)
    assert raised.value.status == 400
    assert feed.subscribers == 0


async def test_the_operator_stream_sends_events_with_cursors_and_resumes_after_one() -> None:
    mesh, feed = default_mesh(), Feed(10, 10)
    sse = streams(mesh, feed)
    reader = Reader(await sse.operator_events(request(), NO_QUERY))
    reading = asyncio.create_task(reader.next())
    await eventually(lambda: feed.subscribers == 1, within=5, what="the stream to subscribe")
    feed.publish("placed", (5, 0), "o1", operator_event("o1", "placed"))
    feed.publish("status", (6, 0), "o1", operator_event("o1"))
    first, second = await reading, await reader.next()
    assert (first["event"], first["id"], first["data"]["type"]) == ("order", "5-0_0-0", "placed")
    assert second["id"] == "5-0_6-0"
    await reader.close()

    resumed = Reader(await sse.operator_events(request(last_event_id=first["id"]), NO_QUERY))
    assert (await resumed.next())["id"] == "5-0_6-0"
    await resumed.close()
    stale = Reader(await sse.operator_events(request(last_event_id="not-a-cursor"), NO_QUERY))
    assert (await stale.next())["event"] == "reset"
    feed.close()
    assert await stale.next() == {}


async def test_no_stream_opens_once_the_gateway_stops() -> None:
    mesh, feed = default_mesh(), Feed(10, 10)
    feed.close()
    with pytest.raises(Problem) as raised:
        await streams(mesh, feed).operator_events(request(), NO_QUERY)
    assert raised.value.status == 503
