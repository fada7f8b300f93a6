"""The forwarder: an outbox stream's handler that relays each message to a RocketMQ topic."""

from __future__ import annotations

import asyncio
import logging

from opentelemetry import trace
from prometheus_client import Counter
from rocketmq import Producer
from rocketmq.v5.client.connection import RpcClient

from mesh import failpoints
from mesh.breaker import Breaker
from mesh.bus.messages import BatchOutcome, Message
from mesh.bus.rocketmq.client import PERMANENT, RocketClient
from mesh.bus.rocketmq.wire import Call, build_calls, send_all, to_rocket
from mesh.bus.tracing import ROCKETMQ, producer_link, publishing

log = logging.getLogger(__name__)


class Forwarder:
    """Handler for a StreamConsumer on an outbox stream: relay each message to ``topic``.

    A batch is cut into SendMessage calls of up to ``per_call`` messages, in
    stream order, all started at once (``wire.send_all``). The proxy answers a
    call of several messages with one receipt (apache/rocketmq#11049), which the
    SDK rejects; ``wire.check_stored`` takes it as "all stored" only with status
    OK. A call not answered so (another status, an error, no answer) is sent
    again one message per call, and what fails then goes alone through the
    SDK's ``send_async``, with its retries: a permanent rejection fails that
    message (dead-lettered after the maximum); anything transient propagates,
    so nothing of the batch is acknowledged and the stream consumer retries it
    after a backoff. A call that failed after the broker stored it is stored
    again by the fallback: a repeat the consumers absorb (order id, event id).

    The messages carry no message group (the topics are NORMAL): the proxy puts
    a call's messages into one queue, in order, but keeps no order between
    calls, just as between the calls of one message each.

    Each batch is a PRODUCER span linked to every message's own producer; the
    messages keep that producer's context in their properties (wire.to_rocket),
    so RocketMQ consumers link to the same spans as stream consumers do.
    ``relayed`` counts the messages the broker stored, ``calls`` the SendMessage
    calls made (the SDK's own retries not counted), ``fallbacks`` the messages
    sent again one per call after their call of several was not stored whole.
    """

    def __init__(
        self,
        client: RocketClient,
        producer: Producer,
        topic: str,
        breaker: Breaker | None = None,
        *,
        per_call: int = 32,
        tracer: trace.Tracer | None = None,
        relayed: Counter | None = None,
        calls: Counter | None = None,
        fallbacks: Counter | None = None,
    ) -> None:
        if per_call < 1:
            raise ValueError(f"per_call must be at least 1, not {per_call}")
        self._client = client
        self._producer = producer
        self._topic = topic
        self._breaker = breaker
        self._per_call = per_call
        self._tracer = tracer or trace.NoOpTracer()
        self._relayed = relayed
        self._calls = calls
        self._fallbacks = fallbacks

    async def _send(self, message: Message) -> str:
        if self._calls is not None:
            self._calls.inc()
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
        # The crash the design must survive: RocketMQ has the batch and the stream
        # has not heard so; the entries are read again and sent twice, and the consumers
        # apply each event once.
        failpoints.crash_here("forwarder.sent")
        return outcome

    async def _relay(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        failed = await self._send_calls(batch, self._per_call)
        alone = [message for call, _ in failed if len(call.messages) == 1 for message in call.messages]
        if several := [(call, error) for call, error in failed if len(call.messages) > 1]:
            messages = [message for call, _ in several for message in call.messages]
            log.warning(
                "rocketmq %s: %d calls of several messages not stored whole (first: %s); sending their %d"
                " messages one per call",
                self._topic, len(several), several[0][1], len(messages),
            )  # fmt: skip
            if self._fallbacks is not None:
                self._fallbacks.inc(len(messages))
            alone += [message for call, _ in await self._send_calls(messages, 1) for message in call.messages]
        for message in alone:
            try:  # the batch failed for this one: alone, once more
                await self._send(message)
            except PERMANENT as error:
                outcome.fail(message, f"rejected by RocketMQ: {error}")
            # Anything else (timeout, unavailable, throttled) propagates: nothing
            # of this batch is acknowledged, and it is retried after a backoff.
        return outcome

    async def _send_calls(self, batch: list[Message], per_call: int) -> list[tuple[Call, BaseException]]:
        """Send ``batch`` in calls of up to ``per_call`` messages, all at once; the calls that failed."""
        # Route lookups may block (a cache miss asks the proxy): built in the executor.
        endpoints, calls = await self._client.blocking(build_calls, self._producer, self._topic, batch, per_call)
        sending = asyncio.run_coroutine_threadsafe(
            send_all(self._producer, endpoints, calls), RpcClient.get_channel_io_loop()
        )
        results = await asyncio.wrap_future(sending)
        if self._calls is not None:
            self._calls.inc(sum(call.error is None for call in calls))
        return [(call, error) for call, error in zip(calls, results, strict=True) if error is not None]
