"""An in-memory transport for unit tests and newcomers: no server, and the handler
contract and settlement rules of the Redis Streams consumer, so a handler tested
here behaves the same on the real transports. Time (backoffs, deferral age,
dead-letter stamps) is the bus' injectable clock: tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mesh.bus.dead_letters import DeadLetter, DeadLetterSink
from mesh.bus.messages import BatchOutcome, Handler, Message
from mesh.bus.redis_streams import ConsumerConfig
from mesh.clock import Clock, utc_now
from mesh.worker import LoopWorker

log = logging.getLogger(__name__)


@dataclass
class _Pending:  # a message delivered to a group and not settled yet
    message: Message  # attempt = 1 + attempts spent; only a failed outcome spends one
    published: datetime  # deferral age counts from here, as Redis counts from the entry id's time
    due: datetime  # not delivered again before this (a backoff)
    in_hand: bool = True  # in a batch a consumer is handling: not for the group's other consumers


@dataclass
class _Group:
    delivered: int = 0  # how many of the stream's entries the group has taken (its cursor)
    pending: dict[str, _Pending] = field(default_factory=dict)  # insertion = stream order


class MemoryBus:
    """The broker: append-only streams and their consumer groups, in this process. Every
    group sees every message of its stream; the consumers of a group share them. Nothing
    outlives the process, so no dead consumer leaves messages to claim (Redis' XAUTOCLAIM):
    a consumer cancelled mid-batch hands the batch back at once."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        self.streams: dict[str, list[tuple[Message, datetime]]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._wakeups: dict[str, asyncio.Event] = {}

    def append(self, stream: str, fields: dict[str, str | bytes]) -> str:
        entries = self.streams.setdefault(stream, [])
        entry_id = f"{len(entries) + 1}-0"  # increasing, shaped like a stream entry id
        raw = {key: value.encode() if isinstance(value, str) else value for key, value in fields.items()}
        type_, order_id = raw.get("type", b"").decode(), raw.get("order_id", b"").decode()
        entries.append((Message(entry_id, stream, type_, order_id, raw.get("event", b"")), self.clock()))
        self.wake(stream)
        return entry_id

    def group(self, stream: str, group: str) -> _Group:
        # A new group starts at the stream's beginning, as ensure_group creates it (id "0").
        return self._groups.setdefault((stream, group), _Group())

    def unsettled(self, stream: str, group: str) -> int:
        """Messages the group has not acknowledged or dead-lettered yet (pending or never read)."""
        state = self.group(stream, group)
        return len(state.pending) + len(self.streams.get(stream, [])) - state.delivered

    def wake(self, stream: str) -> None:
        """Wake the consumers idling on ``stream`` (a publish, a batch handed back)."""
        if (event := self._wakeups.pop(stream, None)) is not None:
            event.set()

    async def idle(self, stream: str, seconds: float) -> None:
        event = self._wakeups.setdefault(stream, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await event.wait()


class MemoryPublisher:
    """RedisPublisher's interface (``fields`` as encode_fields makes them), so code under
    test publishes the same way; also a Republisher for dead-letter replay."""

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    async def publish(self, stream: str, fields: dict[str, str | bytes]) -> str:
        return self._bus.append(stream, fields)

    async def publish_many(self, stream: str, entries: Sequence[dict[str, str | bytes]]) -> None:
        for fields in entries:
            self._bus.append(stream, fields)

    async def republish(self, stream: str, type_: str, order_id: str, payload: bytes) -> str:
        return self._bus.append(stream, {"type": type_, "order_id": order_id, "event": payload})


@dataclass
class MemoryDeadLetters:
    """A DeadLetterSink that keeps each letter with the time it was stored."""

    stored: list[tuple[DeadLetter, datetime]] = field(default_factory=list)

    async def store(self, letter: DeadLetter, now: datetime) -> None:
        self.stored.append((letter, now))


class MemoryConsumer(LoopWorker):
    """One consumer of one group on one stream, delivering batches to ``handler``.

    Settlement, as StreamConsumer's: an unnamed message is acknowledged; a failed one spends
    an attempt, is retried after a backoff (doubling per attempt) and dead-lettered with its
    reason at ``max_attempts``; a deferred one is retried without spending attempts until it
    is older than ``max_defer_seconds``; a raising handler (an outage, not bad messages) gets
    the whole batch again after a backoff, no attempt spent. ``claim_*`` settings are unused."""

    def __init__(
        self,
        bus: MemoryBus,
        stream: str,
        group: str,
        handler: Handler,
        dead_letters: DeadLetterSink,
        *,
        config: ConsumerConfig | None = None,
    ) -> None:
        super().__init__(f"consume:{stream}:{group}")
        self._bus = bus
        self.stream = stream
        self.group = group
        self._handler = handler
        self._dead_letters = dead_letters
        self._config = config or ConsumerConfig()
        self._outages = 0  # handler raises in a row: the retry backoff doubles with them
        # After a raise this consumer pauses, as StreamConsumer sleeps: new messages must not
        # overtake the batch that waits for the outage to end.
        self._paused_until: datetime | None = None

    async def run_until_idle(self) -> int:
        """Consume until a pass makes no progress, ignoring backoffs (as StreamConsumer's):
        everything is acknowledged, dead-lettered or deferred. Returns the progress made."""
        total = 0
        while progress := await self.poll(force_pending=True):
            total += progress
        return total

    async def run(self) -> None:
        while self.running:
            try:
                progress = await self.poll()
            except Exception as error:  # noqa: BLE001 - a consume loop must survive; the batch waits a backoff
                log.warning("consumer %s/%s: %s; batch retried after a backoff", self.stream, self.group, error)
                progress = 0
            if not progress:  # idle until a publish, the next retry due, or block_ms (to see `running` again)
                now, pending = self._bus.clock(), self._bus.group(self.stream, self.group).pending.values()
                due = [t for t in (self._paused_until, *(p.due for p in pending if not p.in_hand)) if t and t > now]
                seconds = (min(due) - now).total_seconds() if due else float("inf")
                await self._bus.idle(self.stream, min(seconds, self._config.block_ms / 1000))

    async def poll(self, force_pending: bool = False) -> int:
        """Handle the group's due pending messages, batch by batch, else one batch of new
        ones. Returns the progress: messages acknowledged, dead-lettered, or failed once
        more (each failure brings a poison message nearer its end); a deferral is none."""
        group = self._bus.group(self.stream, self.group)
        now, size = self._bus.clock(), self._config.batch_size
        if not force_pending and self._paused_until is not None and now < self._paused_until:
            return 0
        progress = 0
        tried: set[str] = set()
        # Page through all of them: a head of waiting (deferred) ones must not hide those behind.
        while batch := [
            p
            for key, p in group.pending.items()
            if not p.in_hand and key not in tried and (force_pending or p.due <= now)
        ][:size]:
            tried.update(p.message.id for p in batch)
            progress += await self._handle(batch)
        if progress:
            return progress
        fresh = self._bus.streams.get(self.stream, [])[group.delivered : group.delivered + size]
        group.delivered += len(fresh)
        batch = [_Pending(message, published, now) for message, published in fresh]
        group.pending.update((p.message.id, p) for p in batch)
        return await self._handle(batch) if batch else 0

    async def _handle(self, batch: list[_Pending]) -> int:
        for pending in batch:
            pending.in_hand = True
        try:
            outcome = await self._handler([p.message for p in batch])
            progress = await self._settle(batch, outcome)
        except asyncio.CancelledError:  # stopped past its grace: the group's other consumers take it now
            self._hand_back(batch, self._bus.clock())
            raise
        except Exception:  # an outage, not the messages' fault: all of them again later, no attempt spent
            self._paused_until = self._bus.clock() + self._backoff(self._outages)
            self._hand_back(batch, self._paused_until)
            self._outages += 1
            raise
        self._outages, self._paused_until = 0, None
        return progress

    def _hand_back(self, batch: list[_Pending], due: datetime) -> None:
        for pending in batch:
            pending.in_hand = False
            pending.due = max(pending.due, due)
        self._bus.wake(self.stream)

    async def _settle(self, batch: list[_Pending], outcome: BatchOutcome) -> int:
        group = self._bus.group(self.stream, self.group)
        now = self._bus.clock()
        progress = 0
        for pending in batch:
            message, pending.in_hand = pending.message, False
            reason = outcome.failed.get(message.id)  # failed and deferred at once: the failure counts
            waiting = outcome.deferred.get(message.id)
            if reason is not None and message.attempt < self._config.max_attempts:
                log.warning("consumer %s: %s failed (attempt %d): %s", self.stream, message.id, message.attempt, reason)
                pending.due = now + self._backoff(message.attempt - 1)
                pending.message = replace(message, attempt=message.attempt + 1)
                progress += 1
                continue
            if reason is None and waiting is not None:
                young = now - pending.published <= timedelta(seconds=self._config.max_defer_seconds)
                if young or message.id in outcome.patient:  # an outage is waited out, however long
                    pending.due = now + self._backoff(0)
                    continue
                reason = f"deferred too long: {waiting}"
            if reason is not None:  # stored before it leaves the group, as on Redis
                m = message
                letter = DeadLetter(0, m.stream, m.id, m.type, m.order_id, reason, m.attempt, m.payload)
                await self._dead_letters.store(letter, now)
                log.error("consumer %s: dead-lettered %s: %s", self.stream, message.id, reason)
            del group.pending[message.id]  # acknowledged or dead-lettered
            progress += 1
        return progress

    def _backoff(self, spent: int) -> timedelta:
        seconds = self._config.retry_backoff_seconds * 2**spent
        return timedelta(seconds=min(seconds, self._config.retry_backoff_max_seconds))
