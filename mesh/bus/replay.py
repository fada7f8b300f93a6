"""The operator's commands on a context's dead letters, on either transport:
``python -m <context> dead-letters`` lists them and ``python -m <context>
replay [ID ...]`` puts them back where they came from. Each takes the
coroutine that builds the context's components, and closes them."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Protocol

import redis.asyncio as redis
from opentelemetry.trace import NoOpTracer

from mesh.bus.dead_letters import SqlDeadLetters, replay
from mesh.bus.redis_streams import RedisPublisher
from mesh.bus.topology import topic_for
from mesh.bus.transport import EventTransport, rocket_client
from mesh.clock import utc_now
from mesh.settings import ServiceSettings


class Components(Protocol):
    """What the commands need of a context's components (the order context's, analytics')."""

    client: redis.Redis

    def dead_letters(self) -> SqlDeadLetters: ...

    async def close(self) -> None: ...


async def print_dead_letters(building: Awaitable[Components]) -> None:
    """Each dead letter not replayed yet, a line each: id, stream (or topic), type,
    order id, attempts, reason."""
    parts = await building
    try:
        for letter in await parts.dead_letters().pending():
            print(f"{letter.id}\t{letter.stream}\t{letter.type}\t{letter.order_id}\t{letter.attempts}\t{letter.reason}")
    finally:
        await parts.close()


async def replay_dead_letters(
    building: Awaitable[Components],
    settings: ServiceSettings,
    subscriptions: Iterable[tuple[str, str]],
    ids: set[int] | None,
) -> None:
    """The dead letters not replayed yet (only ``ids``, if given) back to their
    stream or, on the rocketmq transport, their original topic: one of the
    topics of ``subscriptions``, the context's (stream, group) pairs."""
    parts = await building
    letters = parts.dead_letters()
    transport = EventTransport(settings, parts.client, letters, NoOpTracer(), rocket=rocket_client(settings))
    try:
        topics = sorted({topic_for(stream) for stream, _ in subscriptions})
        count = await replay(letters, await transport.republisher(RedisPublisher(parts.client), topics), utc_now(), ids)
    finally:
        await transport.close()
        await parts.close()
    print(f"replayed {count} dead letters")
