"""The forwarder: an outbox stream's handler that relays each message to a RocketMQ topic."""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from prometheus_client import Counter
from rocketmq import Producer
from rocketmq.v5.client.connection import RpcClient

from mesh.breaker import Breaker
from mesh.bus.messages import BatchOutcome, Message
from mesh.bus.rocketmq.client import PERMANENT, RocketClient
from mesh.bus.rocketmq.wire import build_calls, send_all, to_rocket
from mesh.bus.tracing import ROCKETMQ, producer_link, publishing


class Forwarder:
    """Handler for a StreamConsumer on an outbox stream: relay each message to ``topic``.

    A batch is sent at once (``wire.send_all``), one message per SendMessage:
    the proxy answers a multi-message call with one receipt, which the SDK
    rejects. What fails is sent again alone through ``send_async``, with the
    SDK's retries; a permanent rejection fails that message (dead-lettered
    after the maximum); anything transient propagates, so nothing of the batch
    is acknowledged and the stream consumer retries it after a backoff.

    Each batch is a PRODUCER span linked to every message's own producer; the
    messages keep that producer's context in their properties (wire.to_rocket),
    so RocketMQ consumers link to the same spans as stream consumers do.
    ``relayed`` counts the messages the broker stored.
    """

    def __init__(
        self,
        client: RocketClient,
        producer: Producer,
        topic: str,
        breaker: Breaker | None = None,
        *,
        tracer: trace.Tracer | None = None,
        relayed: Counter | None = None,
    ) -> None:
        self._client = client
        self._producer = producer
        self._topic = topic
        self._breaker = breaker
        self._tracer = tracer or trace.NoOpTracer()
        self._relayed = relayed

    async def _send(self, message: Message) -> str:
        future = await self._client.blocking(self._producer.send_async, to_rocket(self._topic, message))
        receipt = await asyncio.wrap_future(future)
        return str(receipt.message_id)

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        with publishing(self._tracer, ROCKETMQ, self._topic, count=len(batch)) as span:
            if span.is_recording():
                for message in batch:
                    if (link := producer_link(message)) is not None:
                        span.add_link(link.context)
            if self._breaker is None:
                outcome = await self._relay(batch)
            else:
                # Open: Unavailable at once, and the stream consumer backs off
                # (doubling to its maximum) instead of spinning on a dead broker.
                with self._breaker.calling():
                    outcome = await self._relay(batch)
        if self._relayed is not None:
            self._relayed.inc(len(batch) - len(outcome.failed))
        return outcome

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
