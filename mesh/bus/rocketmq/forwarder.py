"""The forwarder: an outbox stream's handler that relays each message to a RocketMQ topic."""

from __future__ import annotations

import asyncio

from rocketmq import Producer
from rocketmq.v5.client.connection import RpcClient

from mesh.breaker import Breaker
from mesh.bus.messages import BatchOutcome, Message
from mesh.bus.rocketmq.client import PERMANENT, RocketClient
from mesh.bus.rocketmq.wire import build_calls, send_all, to_rocket


class Forwarder:
    """Handler for a StreamConsumer on an outbox stream: relay each message to ``topic``.

    A batch is sent at once (``wire.send_all``), one message per SendMessage:
    the proxy answers a multi-message call with one receipt, which the SDK
    rejects. What fails is sent again alone through ``send_async``, with the
    SDK's retries; a permanent rejection fails that message (dead-lettered
    after the maximum); anything transient propagates, so nothing of the batch
    is acknowledged and the stream consumer retries it after a backoff.
    """

    def __init__(
        self,
        client: RocketClient,
        producer: Producer,
        topic: str,
        breaker: Breaker | None = None,
    ) -> None:
        self._client = client
        self._producer = producer
        self._topic = topic
        self._breaker = breaker

    async def _send(self, message: Message) -> str:
        future = await self._client.blocking(self._producer.send_async, to_rocket(self._topic, message))
        receipt = await asyncio.wrap_future(future)
        return str(receipt.message_id)

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        if self._breaker is None:
            return await self._relay(batch)
        # Open: Unavailable at once, and the stream consumer backs off
        # (doubling to its maximum) instead of spinning on a dead broker.
        with self._breaker.calling():
            return await self._relay(batch)

    async def _relay(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        # Route lookups may block (a cache miss asks the proxy): built in the executor.
        endpoints, calls = await self._client.blocking(build_calls, self._producer, self._topic, batch)
        sending = asyncio.run_coroutine_threadsafe(
            send_all(self._producer, endpoints, calls), RpcClient.get_channel_io_loop()
        )
        results = await asyncio.wrap_future(sending)
        for message, result in zip(batch, results, strict=True):
            if result is None:
                continue
            try:  # the batch failed for this one: alone, once more
                await self._send(message)
            except PERMANENT as error:
                outcome.fail(message, f"rejected by RocketMQ: {error}")
            # Anything else (timeout, unavailable, throttled) propagates: nothing
            # of this batch is acknowledged, and it is retried after a backoff.
        return outcome
