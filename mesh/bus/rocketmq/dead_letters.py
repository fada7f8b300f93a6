"""RocketMQ's dead-letter queues into the ``dead_letters`` table, and replay.

A message its group could not handle within the group's maximum deliveries is
moved by the broker to ``%DLQ%<group>``, keeping its body and properties but
not *why* it failed. Consumers therefore note each failure's reason in Redis
(:class:`RedisReasons`); :class:`DeadLetterIntake`, the handler of the
dead-letter consumer group, persists each DLQ message with its original
topic, properties and that reason. ``replay`` republishes to the original
topic (:class:`TopicRepublisher`).
"""

from __future__ import annotations

import asyncio
import json
import logging

import redis.asyncio as redis
from rocketmq import Producer

from mesh.bus.dead_letters import DeadLetter, DeadLetterSink
from mesh.bus.messages import BatchOutcome, Message
from mesh.bus.metrics import BusMetrics, dead_letter_class
from mesh.bus.rocketmq.client import RocketClient
from mesh.bus.rocketmq.wire import to_rocket
from mesh.clock import Clock

log = logging.getLogger(__name__)

# A reason outlives any redelivery schedule (at most ~1 h with the defaults).
REASON_TTL_SECONDS = 7 * 24 * 3600


class RedisReasons:
    """Last failure reason per (group, message id), one small key each so they expire."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    @staticmethod
    def _key(group: str, message_id: str) -> str:
        return f"bus:rocketmq:reason:{group}:{message_id}"

    async def note(self, group: str, message_id: str, reason: str) -> None:
        await self._client.set(self._key(group, message_id), reason[:2000], ex=REASON_TTL_SECONDS)

    async def forget(self, group: str, message_ids: list[str]) -> None:
        await self._client.delete(*(self._key(group, m) for m in message_ids))

    async def take(self, group: str, message_id: str) -> str | None:
        value = await self._client.get(self._key(group, message_id))
        return value.decode() if isinstance(value, bytes) else value


class DeadLetterIntake:
    """Handler of the dead-letter group: each ``%DLQ%<group>`` message becomes a
    ``dead_letters`` row (its original topic in ``stream``), then is acknowledged."""

    def __init__(
        self,
        sink: DeadLetterSink,
        reasons: RedisReasons,
        clock: Clock,
        max_attempts: int,
        *,
        metrics: BusMetrics | None = None,
    ) -> None:
        self._sink = sink
        self._reasons = reasons
        self._clock = clock
        self._max_attempts = max_attempts
        self._counted = metrics.dead_letters if metrics is not None else None

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        for message in batch:
            props = message.headers
            group = message.stream.removeprefix("%DLQ%")
            # The DLQ message keeps the original message id, under which the reason was noted.
            noted = await self._reasons.take(group, message.id)
            reason = f"{noted or 'no reason noted'} (moved to {message.stream} after its deliveries ran out)"
            letter = DeadLetter(
                0,
                props.get("topic", message.stream),
                message.id,
                message.type,
                message.order_id,
                f"{reason}; properties {json.dumps(props, sort_keys=True)}",
                self._max_attempts,
                message.payload,
            )
            # A failure here raises: the message is not acknowledged and comes back.
            await self._sink.store(letter, self._clock())
            await self._reasons.forget(group, [message.id])
            if self._counted is not None:
                # The consumer noted a deferral that ran out as "deferred too long: ...".
                deferred = (noted or "").startswith("deferred too long")
                self._counted.labels(letter.stream, dead_letter_class(message, deferred=deferred)).inc()
            log.error("dead letter from %s: %s %s: %s", message.stream, message.type, message.order_id, reason)
        return BatchOutcome()


class TopicRepublisher:
    """``replay`` for the rocketmq transport: a dead letter goes back to its topic."""

    def __init__(self, client: RocketClient, producer: Producer) -> None:
        self._client = client
        self._producer = producer

    async def republish(self, stream: str, type_: str, order_id: str, payload: bytes) -> str:
        message = to_rocket(stream, Message(id="", stream=stream, type=type_, order_id=order_id, payload=payload))
        future = await self._client.blocking(self._producer.send_async, message)
        receipt = await asyncio.wrap_future(future)
        return str(receipt.message_id)
