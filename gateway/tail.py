"""Reads the order event streams for the SSE connections: plain XREAD, no
consumer group.

Every replica needs every event, and a group would make the gateway a
consumer the streams wait for: the producers trim a stream once every group
has acknowledged an entry (``mesh.bus.redis_streams.trim_acknowledged``), and
a group nobody acknowledges would hold every entry forever. So the gateway
reads behind the groups' backs and must notice when it fell so far behind
that entries were trimmed before it read them.

It counts: a stream's XINFO says how many entries were ever added to it, and
the reader knows how many of them it has accounted for. When the stream's
oldest entry is past the reader's position and more entries were added than
it has read or can still read, the difference was trimmed unread: the feed
announces a gap (``reset`` to operator streams, a fresh read of every watched
order). XINFO and XREAD go in one MULTI, so the count and the entries agree.

On the rocketmq transport the same streams are the outbox the forwarders
relay from (``mesh.bus.transport``): they are trimmed the same way, once the
forwarder group has acknowledged, so reading them works on both transports.

Acknowledgement policy: none; an entry is published to the feed once, in
stream order, and a failed read is retried from the same position after a
backoff (the feed drops an entry it already has).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from google.protobuf.message import DecodeError
from redis.exceptions import ResponseError

from gateway import wire
from gateway.feed import START, Cursor, EntryId, Feed, Stream, entry_text
from gateway.metrics import GatewayMetrics
from mesh.bus.messages import decode_envelope
from mesh.bus.redis_streams import parse_entry_id, text_of
from mesh.worker import LoopWorker

log = logging.getLogger(__name__)
MAX_SEQ = 2**64 - 1


@dataclass
class _Reading:
    """Where the reader is in one stream, and how many of its entries up to
    there it has accounted for (read, or known to be lost)."""

    name: str
    stream: Stream
    position: EntryId = START
    accounted: int = 0


@dataclass(frozen=True)
class _Info:
    added: int
    length: int
    last: EntryId
    first: EntryId | None

    @classmethod
    def of(cls, reply: Any) -> _Info:
        if isinstance(reply, ResponseError):  # no such stream (yet): nothing was ever added
            return cls(0, 0, START, None)
        if isinstance(reply, Exception):
            raise reply
        first = reply.get("first-entry")
        return cls(
            int(reply["entries-added"]),
            int(reply["length"]),
            parse_entry_id(reply["last-generated-id"]),
            parse_entry_id(first[0]) if first else None,
        )


def _before(entry: EntryId) -> EntryId:
    ms, seq = entry
    return (ms, seq - 1) if seq else (ms - 1, MAX_SEQ)


class StreamTail(LoopWorker):
    def __init__(
        self,
        client: redis.Redis,
        streams: Mapping[str, Stream],
        feed: Feed,
        *,
        batch_size: int,
        block_ms: int,
        metrics: GatewayMetrics | None = None,
        backoff_seconds: float = 0.5,
        backoff_max_seconds: float = 10.0,
    ) -> None:
        super().__init__("gateway-stream-tail")
        self._client = client
        self._readings = [_Reading(name, stream) for name, stream in streams.items()]
        self._feed = feed
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._metrics = metrics
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        self.started = False

    async def begin(self) -> None:
        """Start at the streams' ends: the gateway relays what happens from now
        (the order's past is in GetOrder's history)."""
        pipe = self._client.pipeline(transaction=True)
        for reading in self._readings:
            pipe.xinfo_stream(reading.name)
        replies = await pipe.execute(raise_on_error=False)
        cursor = Cursor()
        for reading, reply in zip(self._readings, replies, strict=True):
            info = _Info.of(reply)
            reading.position, reading.accounted = info.last, info.added
            cursor = cursor.at(reading.stream, info.last)
        self._feed.start_at(cursor)
        self.started = True

    async def run(self) -> None:
        backoff = self._backoff
        while self.running:
            try:
                if not self.started:
                    await self.begin()
                if not await self.read_once():
                    await self._wait_for_entries()
                backoff = self._backoff
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the reader must survive anything; logged
                log.warning("stream tail: %s; retrying in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)

    async def read_once(self) -> int:
        """One pass over every stream: notice gaps, publish what was read. Returns the entries read."""
        pipe = self._client.pipeline(transaction=True)
        for reading in self._readings:
            pipe.xinfo_stream(reading.name)
        pipe.xread(self._positions(), count=self._batch_size)
        *infos, read = await pipe.execute(raise_on_error=False)
        if isinstance(read, Exception):
            raise read
        for reading, reply in zip(self._readings, infos, strict=True):
            self._check(reading, _Info.of(reply))
        by_name = {r.name: r for r in self._readings}
        entries: list[tuple[EntryId, _Reading, dict[bytes, bytes]]] = []
        for name, stream_entries in read or []:
            reading = by_name[text_of(name)]
            entries += [(parse_entry_id(entry_id), reading, fields) for entry_id, fields in stream_entries]
        # Both streams in entry-id order: the operator stream shows an order's
        # placement before its first status change.
        for entry, reading, fields in sorted(entries, key=lambda e: e[0]):
            reading.position = entry
            reading.accounted += 1
            self._publish(reading.stream, entry, fields)
        return len(entries)

    def _check(self, reading: _Reading, info: _Info) -> None:
        if info.last < reading.position:
            log.warning("stream %s ends before where it was read: Redis lost entries", reading.name)
            reading.position, reading.accounted = info.last, info.added
            self._feed.rewound(reading.stream, info.last)
            self._count_reset(reading)
            return
        if info.first is not None and info.first <= reading.position:
            return  # the stream still holds the position: nothing unread was trimmed
        lost = info.added - reading.accounted - info.length
        if lost > 0:
            lost_up_to = _before(info.first) if info.first is not None else info.last
            log.warning("stream %s: %d entries trimmed before the gateway read them", reading.name, lost)
            reading.position = max(reading.position, lost_up_to)
            reading.accounted += lost
            self._feed.gap(reading.stream, lost_up_to)
            self._count_reset(reading)

    def _publish(self, stream: Stream, entry: EntryId, fields: dict[bytes, bytes]) -> None:
        order_id = fields.get(b"order_id", b"").decode()
        try:
            envelope = decode_envelope(fields.get(b"event", b""))
        except DecodeError:
            log.warning("stream entry %s is not an event envelope; skipped", entry_text(entry))
            self._feed.publish(stream, entry, order_id, None)
            return
        self._feed.publish(stream, entry, envelope.order_id or order_id, wire.operator_event(envelope))

    def _count_reset(self, reading: _Reading) -> None:
        if self._metrics is not None:
            self._metrics.stream_resets.labels(reading.name).inc()

    async def _wait_for_entries(self) -> None:
        """Block until any stream has an entry past the reader (or the block
        time passes); the next pass reads it with its XINFO."""
        await self._client.xread(self._positions(), count=1, block=self._block_ms)

    def _positions(self) -> dict[Any, Any]:  # redis-py's key and id types, as it spells them
        return {r.name: entry_text(r.position) for r in self._readings}

    async def stopped(self) -> None:
        self._feed.close()
