"""The RocketMQ consumer: SimpleConsumer batches into the same bus handlers the
embedded transport uses, with the same settlement (acknowledge after the
effect is durable; fail with attempts; hold a deferred message invisible
without spending attempts; a raising handler holds the batch)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import trace
from rocketmq import Message as RocketMessage
from rocketmq import SimpleConsumer
from rocketmq.grpc_protocol import AckMessageEntry, AckMessageRequest
from rocketmq.grpc_protocol.definition_pb2 import Code
from rocketmq.v5.util import MessagingResultChecker

from mesh.bus.messages import BatchOutcome, Handler, Message
from mesh.bus.metrics import BusMetrics
from mesh.bus.rocketmq.client import RocketClient
from mesh.bus.rocketmq.wire import from_rocket, origin_ms
from mesh.bus.topology import PREFIX
from mesh.bus.tracing import ROCKETMQ, consuming
from mesh.worker import LoopWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RocketConsumerConfig:
    batch_size: int = 32
    invisible_seconds: int = 30
    # Long polling; the proxy wants the call's remaining deadline above its
    # minimum polling time, so the request timeout (10 s) is added to this.
    await_seconds: int = 5
    # A failed message is visible again after this, doubled per attempt up to
    # the maximum (the proxy's minimum is its minInvisibleTimeMillsForRecv).
    retry_backoff_seconds: int = 1
    retry_backoff_max_seconds: int = 300
    # A deferred message is held in hand and retried for this long; then it
    # counts as failed (like the embedded transport's max_defer_seconds).
    max_hold_seconds: float = 3600.0
    # A held message is tried again after this, doubling up to 5 s.
    hold_retry_seconds: float = 0.2


class FailureReasons(Protocol):
    """Where a consumer notes why a message failed, for the dead-letter consumer:
    RocketMQ moves a message to ``%DLQ%`` with its properties, not our reason."""

    async def note(self, group: str, message_id: str, reason: str) -> None: ...
    async def forget(self, group: str, message_ids: list[str]) -> None: ...
    async def take(self, group: str, message_id: str) -> str | None: ...


class RocketConsumer(LoopWorker):
    """SimpleConsumer batches into bus handlers (one per subscribed topic);
    each message is acknowledged only after its handler made it durable."""

    def __init__(
        self,
        client: RocketClient,
        group: str,
        handlers: Mapping[str, Handler],
        config: RocketConsumerConfig,
        tracer: trace.Tracer,
        reasons: FailureReasons | None = None,
        metrics: BusMetrics | None = None,
    ) -> None:
        super().__init__(f"rocketmq:{group}")
        self._tracer = tracer
        self._client = client
        self.group = group
        self._handlers = dict(handlers)
        self._config = config
        self._reasons = reasons
        self._consumer: SimpleConsumer | None = None
        self._held: dict[str, _Held] = {}
        # Labelled by the bus group ("order", not "ordermesh-order"): the same
        # series as on the embedded transport.
        label = group.removeprefix(PREFIX)
        self._lag = metrics.lag.labels(label) if metrics is not None else None
        self._batch_sizes = metrics.batch_size.labels(label) if metrics is not None else None

    async def open(self) -> None:
        """Connect the SimpleConsumer (``start`` also runs the loop; tests poll instead)."""
        if self._consumer is None:
            self._consumer = await self._client.consumer(self.group, list(self._handlers), self._config.await_seconds)

    async def start(self) -> None:
        await self.open()
        await super().start()

    async def stopped(self) -> None:
        if self._consumer is not None:
            await self._client.blocking(self._consumer.shutdown)

    async def run(self) -> None:
        backoff, failures = 1.0, 0
        while self.running:
            try:
                await self.open()
                await self.poll()
                backoff, failures = 1.0, 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a consume loop must survive; logged, backs off
                log.warning("rocketmq consumer %s: %s; retrying in %.0fs", self.group, error, backoff)
                self._held.clear()  # their receipts may be stale: they come back by redelivery
                failures += 1
                if failures % 3 == 0:
                    # A restarted proxy has forgotten this client's settings ("settings is
                    # null") and the client never sends them again: start a fresh one.
                    await self._discard_consumer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _discard_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await self._client.blocking(consumer.shutdown)
            except Exception as error:  # noqa: BLE001 - it is being replaced; nothing to save
                log.info("rocketmq consumer %s: shutdown of the old client: %s", self.group, error)

    async def poll(self) -> int:
        """Receive one batch, hand it (with the held messages now due) to the
        handlers, settle every message. Returns how many were handled."""
        assert self._consumer is not None
        await self._renew([h.rocket for h in self._held.values() if h.renew_at <= self._now()])
        future = await self._client.blocking(
            self._consumer.receive_async, self._config.batch_size, self._config.invisible_seconds
        )
        received: list[RocketMessage] = await asyncio.wrap_future(future)
        self._measure_lag(received)
        now = self._now()
        due = [h for h in self._held.values() if h.due <= now]
        if not received and not due:
            return 0
        by_topic: dict[str, list[tuple[RocketMessage, Message]]] = {}
        for rocket in received:
            by_topic.setdefault(str(rocket.topic), []).append((rocket, from_rocket(rocket)))
        # Held ones are older than anything received: first in their topic's batch, in
        # their own order; their topic after the received ones (an OrderPlaced just
        # received is inserted before the status events that waited for it).
        held_by_topic: dict[str, list[tuple[RocketMessage, Message]]] = {}
        for held in sorted(due, key=lambda h: h.since):
            held_by_topic.setdefault(held.message.stream, []).append((held.rocket, held.message))
        for topic, pairs in held_by_topic.items():
            by_topic[topic] = pairs + by_topic.get(topic, [])
        settled: list[tuple[RocketMessage, Message, BatchOutcome]] = []
        for topic, pairs in by_topic.items():
            outcome = await self._handle(topic, [message for _, message in pairs], [r for r, _ in pairs])
            settled += [(rocket, message, outcome) for rocket, message in pairs]
        await self._settle(settled)
        return len(settled)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _measure_lag(self, received: list[RocketMessage]) -> None:
        """The consumer lag as this consumer can know it without asking the broker's
        admin API: the age of the oldest message it just received or holds (from
        the time it entered its stream, when forwarded), 0 when it has none."""
        if self._lag is None:
            return
        times = [origin_ms(r) for r in received] + [origin_ms(h.rocket) for h in self._held.values()]
        known = [t for t in times if t]
        self._lag.set(max(0.0, time.time() - min(known) / 1000) if known else 0.0)

    async def _handle(self, topic: str, batch: list[Message], received: list[RocketMessage]) -> BatchOutcome:
        handler = self._handlers.get(topic)
        if handler is None:  # the proxy delivered a topic nobody here handles: leave it to expire
            raise RuntimeError(f"no handler for topic {topic!r} in group {self.group!r}")
        if self._batch_sizes is not None:
            self._batch_sizes.observe(len(batch))
        # Links from each message's properties (Message.headers), where the forwarder put its producer's context.
        with consuming(self._tracer, ROCKETMQ, topic, self.group, batch):
            return await self._handle_until_done(handler, batch, received)

    async def _handle_until_done(
        self, handler: Handler, batch: list[Message], received: list[RocketMessage]
    ) -> BatchOutcome:
        """A handler that raises hit an outage (SQL down), not a bad message: hold
        the batch and retry, keeping it invisible, so the outage spends no
        delivery attempts. On stop, the batch goes back to the broker."""
        backoff = 1.0
        while True:
            try:
                return await handler(batch)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not self.running:
                    raise
                log.warning("rocketmq %s: handler failed (%s); holding %d messages", self.group, error, len(batch))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                await self._renew(received)

    async def _renew(self, received: list[RocketMessage]) -> None:
        assert self._consumer is not None
        if not received:
            return
        consumer, seconds = self._consumer, self._config.invisible_seconds
        renewed = {str(r.message_id) for r in received}
        for held in self._held.values():
            if held.message.id in renewed:
                held.renew_at = self._now() + seconds / 2
        await asyncio.gather(*(self._client.blocking(consumer.change_invisible_duration, r, seconds) for r in received))

    async def _settle(self, settled: list[tuple[RocketMessage, Message, BatchOutcome]]) -> None:
        assert self._consumer is not None
        consumer, group, now = self._consumer, self.group, self._now()
        acks: list[RocketMessage] = []
        retries: list[tuple[RocketMessage, int]] = []
        recovered: list[str] = []
        for rocket, message, outcome in settled:
            held = self._held.pop(message.id, None)
            reason = outcome.failed.get(message.id)
            waiting = outcome.deferred.get(message.id)
            if waiting is not None:
                since = held.since if held else now
                if now - since < self._config.max_hold_seconds or message.id in outcome.patient:
                    # Not handled *yet* (a status event before its order): held here and
                    # retried soon, invisible meanwhile, so waiting spends no delivery attempts.
                    tries = held.tries + 1 if held else 0
                    renew_at = held.renew_at if held else now + self._config.invisible_seconds / 2
                    due = now + min(self._config.hold_retry_seconds * 2**tries, 5.0)
                    self._held[message.id] = _Held(rocket, message, since, due, renew_at, tries)
                    continue
                reason = f"deferred too long: {waiting}"
            if reason is None:
                acks.append(rocket)
                if message.attempt > 1:
                    recovered.append(message.id)
                continue
            # Not acknowledged: visible again after a backoff; RocketMQ counts the
            # delivery and moves the message to %DLQ% after the group's maximum.
            if self._reasons is not None:
                await self._reasons.note(group, message.id, reason)
            log.warning("rocketmq %s: %s failed (attempt %d): %s", group, message.id, message.attempt, reason)
            backoff = self._config.retry_backoff_seconds * 2 ** (message.attempt - 1)
            retries.append((rocket, max(1, min(backoff, self._config.retry_backoff_max_seconds))))

        # Invisibility changes are the client's blocking call, a few at a time in the
        # executor (its change_invisible_duration_async returns nothing to wait on).
        await asyncio.gather(
            self._ack_all(acks),
            *(self._client.blocking(consumer.change_invisible_duration, r, sec) for r, sec in retries),
        )
        if recovered and self._reasons is not None:
            await self._reasons.forget(group, recovered)

    async def _ack_all(self, received: list[RocketMessage]) -> None:
        """One AckMessage call per topic and proxy for the whole batch. The client
        acks one message per call (its ack_async returns nothing to wait on, and its
        private variant needs an asyncio loop in the calling thread); the protocol
        takes many entries per call, each answered on its own."""
        assert self._consumer is not None
        consumer = self._consumer
        requests: dict[tuple[str, int], tuple[Any, AckMessageRequest]] = {}
        for rocket in received:
            key = (str(rocket.topic), id(rocket.endpoints))
            if key not in requests:
                request = AckMessageRequest()
                request.group.name = self.group
                request.topic.name = str(rocket.topic)
                requests[key] = (rocket.endpoints, request)
            requests[key][1].entries.append(
                AckMessageEntry(message_id=rocket.message_id, receipt_handle=rocket.receipt_handle)
            )

        def submit() -> list[Future[Any]]:
            timeout = consumer.client_configuration.request_timeout
            return [
                consumer.rpc_client.ack_message_async(endpoints, request, metadata=consumer.sign(), timeout=timeout)
                for endpoints, request in requests.values()
            ]

        for reply in await asyncio.gather(*(asyncio.wrap_future(f) for f in await self._client.blocking(submit))):
            MessagingResultChecker.check(reply.status)
            # A message whose ack failed comes back after its invisible time; the
            # handlers are idempotent, so it is only a repeat.
            for entry in reply.entries:
                if entry.status.code != Code.OK:
                    log.warning("rocketmq %s: ack of %s failed: %s", self.group, entry.message_id, entry.status.message)


@dataclass
class _Held:
    """A deferred message kept in hand (invisible to others) until it can be handled."""

    rocket: RocketMessage
    message: Message
    since: float  # loop time of the first deferral
    due: float  # loop time of the next try
    renew_at: float  # loop time to extend its invisibility again
    tries: int
