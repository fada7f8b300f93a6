"""The gateway's stream reader on a real Redis: it starts at the streams' ends,
relays both streams in entry order, and notices entries trimmed (or lost by
Redis) before it read them; and the gateway's graceful stop with a live SSE
stream open."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as redis

from gateway.bootstrap import bootstrap, components
from gateway.feed import RESET, Feed, OperatorMessage
from gateway.server import GatewayServer
from gateway.settings import GatewaySettings
from gateway.tail import StreamTail
from mesh.bus.messages import encode_fields
from mesh.bus.redis_streams import parse_entry_id, text_of
from mesh.local.procs import RedisServer
from ordermesh.common.v1 import common_pb2
from tests.analytics_support import money, order_placed, status_changed
from tests.support import eventually

AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    await connection.aclose()


@pytest.fixture
def names() -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {"placed": f"test:{run}:order-placed", "status": f"test:{run}:order-status"}


def tail_of(client: redis.Redis, names: dict[str, str], feed: Feed) -> StreamTail:
    streams = {names["placed"]: "placed", names["status"]: "status"}
    return StreamTail(client, streams, feed, batch_size=100, block_ms=50)  # type: ignore[arg-type]


async def placed(client: redis.Redis, stream: str, order_id: str) -> str:
    envelope = order_placed(order_id, AT, [("sku-1", 1, money(5))])
    return text_of(await client.xadd(stream, encode_fields(envelope)))  # type: ignore[arg-type]


async def paid(client: redis.Redis, stream: str, order_id: str, entry_id: str = "*") -> str:
    envelope = status_changed(order_id, common_pb2.PAID, AT)
    return text_of(await client.xadd(stream, encode_fields(envelope), id=entry_id))  # type: ignore[arg-type]


async def test_the_reader_starts_at_the_end_and_relays_both_streams_in_entry_order(
    client: redis.Redis, names: dict[str, str]
) -> None:
    await placed(client, names["placed"], "o-before")  # before the gateway: GetOrder's history has it
    feed = Feed(100, 100)
    tail = tail_of(client, names, feed)
    await tail.begin()
    inbox = feed.subscribe(None)
    placed_at = parse_entry_id(await placed(client, names["placed"], "o-1"))
    # Entry ids order the streams between them only to the millisecond (each
    # stream numbers its own entries within one), so the change comes a
    # millisecond after the placing, as it would in the mesh.
    await paid(client, names["status"], "o-1", f"{placed_at[0] + 1}-0")
    await client.xadd(names["status"], {"type": "Junk", "order_id": "o-1", "event": b"\xff\xff"})
    assert await tail.read_once() == 3
    first, second = await inbox.get(0.1), await inbox.get(0.1)
    assert isinstance(first, OperatorMessage) and isinstance(second, OperatorMessage)
    assert [(first.event["type"], first.event["order_id"]), (second.event["type"], second.event["status"])] == [
        ("placed", "o-1"),
        ("status", "PAID"),
    ]
    assert await inbox.get(0.01) is None  # the undecodable entry moved the position, nothing else
    assert await tail.read_once() == 0


async def test_entries_trimmed_before_the_reader_got_them_are_a_reset(
    client: redis.Redis, names: dict[str, str]
) -> None:
    feed = Feed(100, 100)
    tail = tail_of(client, names, feed)
    await tail.begin()
    inbox = feed.subscribe(None)
    await paid(client, names["status"], "o-1")
    assert await tail.read_once() == 1
    await inbox.get(0.1)
    # Trimming what the reader already has is nothing to report.
    last = await paid(client, names["status"], "o-2")
    await client.xtrim(names["status"], minid=last, approximate=False)
    assert await tail.read_once() == 1
    assert isinstance(await inbox.get(0.1), OperatorMessage)
    # Entries trimmed unread (the groups went faster than this replica) are.
    await paid(client, names["status"], "o-3")
    newest = await paid(client, names["status"], "o-4")
    await client.xtrim(names["status"], minid=newest, approximate=False)
    assert await tail.read_once() == 1
    assert await inbox.get(0.1) is RESET
    item = await inbox.get(0.1)
    assert isinstance(item, OperatorMessage) and item.event["order_id"] == "o-4"
    # Everything trimmed away, nothing left to read: still noticed.
    await paid(client, names["status"], "o-5")
    await client.xtrim(names["status"], maxlen=0, approximate=False)
    assert await tail.read_once() == 0
    assert await inbox.get(0.1) is RESET
    assert await tail.read_once() == 0
    assert await inbox.get(0.01) is None


async def test_a_stream_redis_lost_is_read_again_from_its_new_end(client: redis.Redis, names: dict[str, str]) -> None:
    feed = Feed(100, 100)
    tail = tail_of(client, names, feed)
    await tail.begin()
    await paid(client, names["status"], "o-1")
    assert await tail.read_once() == 1
    inbox = feed.subscribe(None)
    await client.delete(names["status"])  # as after a Redis restarted empty
    assert await tail.read_once() == 0
    assert await inbox.get(0.1) is RESET
    await paid(client, names["status"], "o-2")
    assert await tail.read_once() == 1


async def test_the_gateway_stops_gracefully_with_an_sse_stream_open(
    redis_server: RedisServer, client: redis.Redis, names: dict[str, str]
) -> None:
    """No mesh at all: the operator stream needs only Redis. On stop, /readyz
    answers 503 draining while requests are still served, then the stream
    ends and the server stops."""
    settings = GatewaySettings(
        redis_url=redis_server.url,
        http_host="127.0.0.1",
        http_port=0,
        metrics_port=0,
        order_placed_stream=names["placed"],
        order_status_stream=names["status"],
        events_block_ms=50,
        shutdown_delay_seconds=1.0,
        readiness_interval_seconds=0.2,
        catalog_address="127.0.0.1:9",
        checkout_address="127.0.0.1:9",
        order_address="127.0.0.1:9",
        analytics_address="127.0.0.1:9",
    )
    server = GatewayServer(await bootstrap(settings))
    await server.start()
    parts = components(server.app)
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get("/readyz")).json()["checks"]["redis"] is True
        await eventually(lambda: parts.tail.started, what="the reader to start")
        async with http.stream("GET", "/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            await eventually(lambda: parts.feed.subscribers == 1, what="the stream to subscribe")
            await placed(client, names["placed"], "o-live")
            assert await anext(lines) == "event: order"
            assert (await anext(lines)).startswith("id: ")
            assert '"order_id":"o-live"' in await anext(lines)
            assert parts.metrics.open_streams.labels("operator")._value.get() == 1
            stopping = asyncio.create_task(server.stop())
            await eventually(lambda: parts.health.draining, what="draining")
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()["status"]) == (503, "draining")
            rest = [line async for line in lines]
            assert all(not line.startswith("event:") for line in rest)
        await asyncio.wait_for(stopping, 15)
    assert parts.metrics.open_streams.labels("operator")._value.get() == 0
