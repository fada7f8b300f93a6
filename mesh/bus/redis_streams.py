"""The embedded transport: Redis Streams with consumer groups.

Acknowledgement policy: a message is acknowledged (XACK) only after the
handler returned without naming it as failed, i.e. after its effect is
durable. A failed message stays pending and is re-read from this consumer's pending list after a backoff; its attempts
are counted in Redis (shared by all consumers, kept across restarts) and after
``max_attempts`` it is dead-lettered: persisted through the sink first, then
acknowledged. If the handler raises (a dependency such as SQL is down), the
whole batch stays pending and is retried after a backoff, without counting
attempts: an outage is not the messages' fault. Messages a dead consumer left
pending are taken over with XAUTOCLAIM after ``claim_idle_ms``.

Trimming: a stream may feed several groups, so a consumer never deletes what
it acknowledged; it trims (XTRIM MINID) below the oldest entry that any group
still has pending or has not been delivered yet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as redis
from opentelemetry import trace
from redis.exceptions import ResponseError

from mesh.bus.dead_letters import DeadLetter, DeadLetterSink
from mesh.bus.messages import BatchOutcome, Handler, Message, decode_envelope, encode_fields
from mesh.bus.metrics import BusMetrics, dead_letter_class
from mesh.bus.tracing import MESSAGE_ID, REDIS, consuming, envelope_link, publishing
from mesh.clock import Clock, utc_now
from mesh.redis_pipe import RedisPipe
from mesh.telemetry import inject_context, span_link
from mesh.worker import LoopWorker
from ordermesh.events.v1 import events_pb2

log = logging.getLogger(__name__)


async def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


class RedisPublisher:
    """Append events to a stream (the outbox of the producing context).

    With a tracer, each call is a PRODUCER span (mesh.bus.tracing). An event
    built under the current span (or carrying no context) is stamped again inside
    the publish span, so it carries that span's context, a child of the one it was
    built under. An event that carries a context from elsewhere (a replayed dead
    letter, an event relayed for another process) keeps it, so its order keeps its
    trace; the publish span links to it. A batch (an outbox relay) keeps each
    event's own context and links to it."""

    def __init__(self, client: redis.Redis, tracer: trace.Tracer | None = None, pipe: RedisPipe | None = None) -> None:
        self._client = client
        self._tracer = tracer
        self._pipe = pipe  # single appends go on it when given (a request's event); batches use the pool

    async def publish(self, stream: str, fields: dict[str, str | bytes]) -> str:
        if self._tracer is None:
            return await self._xadd(stream, fields)
        envelope = _envelope_of(fields)
        carried = span_link(envelope.trace_context) if envelope is not None else None
        current = trace.get_current_span().get_span_context()
        built_here = carried is None or carried.context.span_id == current.span_id
        with publishing(self._tracer, REDIS, stream, links=[] if built_here or carried is None else [carried]) as span:
            if envelope is not None and built_here:
                envelope.trace_context.clear()
                envelope.trace_context.update(inject_context())
                fields = {**fields, "event": envelope.SerializeToString()}
            entry_id = await self._xadd(stream, fields)
            if span.is_recording():
                span.set_attribute(MESSAGE_ID, entry_id)
            return entry_id

    async def publish_envelope(self, stream: str, make: Callable[[], events_pb2.Envelope]) -> str:
        """Build an event inside its PRODUCER span and append it: the envelope
        carries that span's context from the start and is serialised once
        (``publish`` must parse an event built elsewhere to stamp it)."""
        if self._tracer is None:
            return await self._xadd(stream, encode_fields(make()))
        with publishing(self._tracer, REDIS, stream) as span:
            entry_id = await self._xadd(stream, encode_fields(make()))
            if span.is_recording():
                span.set_attribute(MESSAGE_ID, entry_id)
            return entry_id

    async def _xadd(self, stream: str, fields: dict[str, str | bytes]) -> str:
        if self._pipe is not None:
            entry_id = await self._pipe.call("XADD", stream, "*", *(part for pair in fields.items() for part in pair))
        else:
            entry_id = await self._client.xadd(stream, cast(Any, fields))
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def publish_many(self, stream: str, entries: Sequence[dict[str, str | bytes]]) -> None:
        """Append several events in one round trip, in order (a pipeline, not a
        transaction: a failure part-way leaves a prefix, and the caller retries the
        rest, as with one-by-one publishing)."""
        if self._tracer is None:
            return await self._pipeline(stream, entries)
        with publishing(self._tracer, REDIS, stream, count=len(entries)) as span:
            if span.is_recording():
                for fields in entries:
                    event = fields.get("event")
                    if isinstance(event, bytes) and (link := envelope_link(event)) is not None:
                        span.add_link(link.context)
            await self._pipeline(stream, entries)

    async def _pipeline(self, stream: str, entries: Sequence[dict[str, str | bytes]]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for fields in entries:
                pipe.xadd(stream, cast(Any, fields))
            await pipe.execute()

    async def republish(self, stream: str, type_: str, order_id: str, payload: bytes) -> str:
        return await self.publish(stream, {"type": type_, "order_id": order_id, "event": payload})


@dataclass(frozen=True)
class ConsumerConfig:
    batch_size: int = 100
    block_ms: int = 200
    # After a batch shorter than batch_size, wait this long before reading again
    # so the next batch gathers what arrived meanwhile: a batch's transaction,
    # acknowledgement and span are paid once for many messages, for at most
    # this much latency (0: read again at once).
    linger_ms: int = 0
    max_attempts: int = 5
    retry_backoff_seconds: float = 0.5
    retry_backoff_max_seconds: float = 10.0
    claim_idle_ms: int = 30_000
    claim_every_seconds: float = 5.0
    max_defer_seconds: float = 3600.0


class StreamConsumer(LoopWorker):
    """One consumer of one group on one stream, delivering batches to ``handler``."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        handler: Handler,
        dead_letters: DeadLetterSink,
        *,
        tracer: trace.Tracer,
        config: ConsumerConfig = ConsumerConfig(),
        consumer: str | None = None,
        clock: Clock = utc_now,
        metrics: BusMetrics | None = None,
    ) -> None:
        super().__init__(f"consume:{stream}:{group}")
        self._client = client
        self.stream = stream
        self.group = group
        self._handler = handler
        self._dead_letters = dead_letters
        self._tracer = tracer
        self._config = config
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._clock = clock
        self._attempts_key = f"bus:attempts:{stream}:{group}"
        self._pending_due = 0.0  # loop time when this consumer's pending list is due again
        self._batch_sizes = metrics.batch_size.labels(group) if metrics is not None else None
        self._dead_letters_counted = metrics.dead_letters if metrics is not None else None
        if metrics is not None:
            metrics.source(stream)

    async def run_until_idle(self) -> int:
        """Consume until a pass makes no progress (tests): everything is
        acknowledged, dead-lettered or deferred. Returns the progress made."""
        await self.ensure_group()
        total = 0
        while True:
            progress = await self.poll(block_ms=None, force_pending=True)
            total += progress
            if progress == 0:
                return total

    async def ensure_group(self) -> None:
        await ensure_group(self._client, self.stream, self.group)

    # -- the loop ------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self._config.retry_backoff_seconds
        group_ready = False
        next_claim = 0.0
        while self.running:
            try:
                if not group_ready:
                    await self.ensure_group()
                    group_ready = True
                if loop.time() >= next_claim:
                    await self.claim_stale()
                    await trim_acknowledged(self._client, self.stream)
                    next_claim = loop.time() + self._config.claim_every_seconds
                handled = await self.poll(block_ms=self._config.block_ms)
                backoff = self._config.retry_backoff_seconds
                if self._config.linger_ms and 0 < handled < self._config.batch_size:
                    await asyncio.sleep(self._config.linger_ms / 1000)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a consume loop must survive anything; logged
                log.warning("consumer %s/%s: %s; retrying in %.1fs", self.stream, self.group, error, backoff)
                self._pending_due = 0.0
                if isinstance(error, ResponseError) and str(error).startswith("NOGROUP"):
                    # Redis lost its data (restarted empty, flushed): the group is made
                    # again, from the start of whatever the stream holds now.
                    group_ready = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._config.retry_backoff_max_seconds)

    async def claim_stale(self) -> int:
        reply = await self._client.xautoclaim(
            self.stream, self.group, self.consumer, self._config.claim_idle_ms, "0-0", count=self._config.batch_size
        )
        claimed = len(reply[1]) if reply else 0
        if claimed:
            log.info("consumer %s/%s: claimed %d stale messages", self.stream, self.group, claimed)
            self._pending_due = 0.0
        return claimed

    async def poll(self, block_ms: int | None, force_pending: bool = False) -> int:
        """Handle this consumer's due pending messages, else one batch of new
        ones. Returns the progress: messages acknowledged, dead-lettered, or
        failed once more (each failure brings a poison message nearer its end)."""
        loop = asyncio.get_running_loop()
        progress = 0
        if force_pending or loop.time() >= self._pending_due:
            delivered, progress = await self._consume_pending()
            if not delivered:
                self._pending_due = float("inf")  # nothing pending until a failure schedules it
            elif progress:
                return progress
        return progress + (await self._consume(">", block_ms))[1]

    async def _consume_pending(self) -> tuple[int, int]:
        """Every pending message of this consumer, page by page: a head of messages
        that keep waiting (deferred, failing) must not hide the ones behind it
        (claimed from a dead consumer, or deferred and ready now)."""
        delivered = progress = 0
        cursor = "0"
        while True:
            page, page_progress, last = await self._consume(cursor, None)
            delivered += page
            progress += page_progress
            if page < self._config.batch_size or not last:
                return delivered, progress
            cursor = last  # XREADGROUP with an id returns pending entries after it

    async def _consume(self, start_id: str, block_ms: int | None) -> tuple[int, int, str]:
        """Read one batch and settle it: (messages delivered, progress, last id read)."""
        reply: Any = await self._client.xreadgroup(
            self.group, self.consumer, {self.stream: start_id}, count=self._config.batch_size, block=block_ms
        )
        delivered: list[tuple[bytes, dict[bytes, bytes] | None]] = reply[0][1] if reply else []
        if not delivered:
            return 0, 0, ""
        gone = [entry_id for entry_id, fields in delivered if not fields]  # trimmed after an ack was lost
        if gone:
            await self._acknowledge([e.decode() for e in gone])
        entries = [(entry_id.decode(), fields) for entry_id, fields in delivered if fields]
        progress = await self._handle(entries) if entries else 0
        return len(delivered), len(gone) + progress, delivered[-1][0].decode()

    async def _handle(self, entries: list[tuple[str, dict[bytes, bytes]]]) -> int:
        attempts = await self._attempts([entry_id for entry_id, _ in entries])
        messages = [
            Message(
                id=entry_id,
                stream=self.stream,
                type=fields.get(b"type", b"").decode(),
                order_id=fields.get(b"order_id", b"").decode(),
                payload=fields.get(b"event", b""),
                attempt=attempts.get(entry_id, 0) + 1,
            )
            for entry_id, fields in entries
        ]
        if self._batch_sizes is not None:
            self._batch_sizes.observe(len(messages))
        with consuming(self._tracer, REDIS, self.stream, self.group, messages):
            outcome = await self._handler(messages)
        return await self._settle(messages, outcome)

    async def _settle(self, messages: list[Message], outcome: BatchOutcome) -> int:
        done = [m.id for m in messages if m.id not in outcome.failed and m.id not in outcome.deferred]
        retry_later = False
        now_ms = self._clock().timestamp() * 1000
        for message in messages:
            waiting = outcome.deferred.get(message.id)
            if waiting is None:
                continue
            too_long = now_ms - parse_entry_id(message.id)[0] > self._config.max_defer_seconds * 1000
            if too_long and message.id not in outcome.patient:
                await self._dead_letter(message, f"deferred too long: {waiting}", deferred=True)
                done.append(message.id)
            else:
                retry_later = True
        counted = 0
        for message in messages:
            reason = outcome.failed.get(message.id)
            if reason is None:
                continue
            if message.attempt >= self._config.max_attempts:
                await self._dead_letter(message, reason, deferred=False)
                done.append(message.id)
            else:
                await self._client.hincrby(self._attempts_key, message.id, 1)
                counted += 1
                log.warning("consumer %s: %s failed (attempt %d): %s", self.stream, message.id, message.attempt, reason)
                retry_later = True
        if done:
            await self._acknowledge(done)
        if retry_later:
            attempt = max((m.attempt for m in messages if m.id in outcome.failed), default=1)
            delay = min(self._config.retry_backoff_seconds * 2 ** (attempt - 1), self._config.retry_backoff_max_seconds)
            self._pending_due = asyncio.get_running_loop().time() + delay
        return len(done) + counted

    async def _dead_letter(self, message: Message, reason: str, *, deferred: bool) -> None:
        letter = DeadLetter(
            0, self.stream, message.id, message.type, message.order_id, reason, message.attempt, message.payload
        )
        await self._dead_letters.store(letter, self._clock())
        dead_fields: Any = {
            "type": message.type,
            "order_id": message.order_id,
            "event": message.payload,
            "reason": reason,
            "attempts": message.attempt,
            "message_id": message.id,
        }
        await self._client.xadd(f"{self.stream}:dead", dead_fields)
        if self._dead_letters_counted is not None:
            self._dead_letters_counted.labels(self.stream, dead_letter_class(message, deferred=deferred)).inc()
        log.error(
            "consumer %s: dead-lettered %s after %d attempts: %s", self.stream, message.id, message.attempt, reason
        )

    async def _attempts(self, entry_ids: list[str]) -> dict[str, int]:
        values = await self._client.hmget(self._attempts_key, entry_ids)
        return {entry_id: int(v) for entry_id, v in zip(entry_ids, values, strict=True) if v is not None}

    async def _acknowledge(self, entry_ids: list[str]) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, *entry_ids)
        pipe.hdel(self._attempts_key, *entry_ids)
        await pipe.execute()


async def trim_acknowledged(client: redis.Redis, stream: str) -> None:
    """Drop entries every group has acknowledged; keep anything any group still needs."""
    groups: Any = await client.xinfo_groups(stream)
    if not groups:
        return
    floor: tuple[int, int] | None = None
    for group in groups:
        # XPENDING's "min" is None when the group acknowledged its last pending
        # entry between XINFO and XPENDING: then everything delivered is acknowledged.
        summary: Any = await client.xpending(stream, group["name"]) if int(group["pending"]) else None
        if summary is not None and summary["min"] is not None:
            needed = parse_entry_id(summary["min"])
        else:
            # Everything up to last-delivered-id is acknowledged; the next one is needed.
            ms, seq = parse_entry_id(group["last-delivered-id"])
            needed = (ms, seq + 1)
        floor = needed if floor is None else min(floor, needed)
    if floor is not None and floor > (0, 0):
        await client.xtrim(stream, minid=f"{floor[0]}-{floor[1]}", approximate=False)


async def oldest_unacknowledged_ms(client: redis.Redis, stream: str, group: str) -> int | None:
    """Entry time (ms) of the oldest entry ``group`` has not acknowledged: its
    oldest pending one, else the first one it has not read; None when caught up."""
    groups: Any = await client.xinfo_groups(stream)
    info = next((g for g in groups if text_of(g["name"]) == group), None)
    if info is None:
        return None
    summary: Any = await client.xpending(stream, group) if int(info["pending"]) else None
    if summary is not None and summary["min"] is not None:  # None: acknowledged since XINFO
        return parse_entry_id(summary["min"])[0]
    ms, seq = parse_entry_id(info["last-delivered-id"])
    unread: Any = await client.xrange(stream, min=f"{ms}-{seq + 1}", count=1)
    return parse_entry_id(unread[0][0])[0] if unread else None


def text_of(value: Any) -> str:
    """A Redis reply (bytes or str) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_entry_id(value: Any) -> tuple[int, int]:
    """A stream entry id ("ms-seq") as a comparable pair."""
    ms, _, seq = text_of(value).partition("-")
    return int(ms), int(seq or 0)


def _envelope_of(fields: dict[str, str | bytes]) -> events_pb2.Envelope | None:
    event = fields.get("event")
    if not isinstance(event, bytes):
        return None
    try:
        return decode_envelope(event)
    except Exception:  # noqa: BLE001 - not an envelope: published as it is, with no context to stamp
        return None
