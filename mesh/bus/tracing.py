"""Messaging spans, after OpenTelemetry's messaging conventions, for both transports.

- PRODUCER: one span per publish (``publishing``): a single event appended to
  a stream carries that span's context; a batch (an outbox relay, a forwarder)
  gets one span that links to the context every event already carries (the
  span that created it), which the consumers link to as well.
- CONSUMER: one span per batch a consumer hands to its handler (``consuming``),
  with one link per message to the context it carries (MAX_LINKS in
  mesh.telemetry keeps them all).
- per message: a child of the batch span (``message_span``) where a handler's
  work is per message (RPCs for one order), linked to that message's producer;
  and, for every message of a recorded batch, a ``process`` span in the
  producer's own trace, linked back to the batch (an order's trace shows the
  consumers that handled its events).

Spans here never record an exception's text (it may quote data: a SQL error
quoting a row); a failure is the span's status with the exception's type.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ParamSpec

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from mesh.bus.messages import Message, decode_envelope
from mesh.telemetry import span_link

REDIS = "redis"
ROCKETMQ = "rocketmq"

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION = "messaging.operation"  # the older name of messaging.operation.type
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
CONSUMER_GROUP = "messaging.consumer.group.name"
ORDER_ID = "ordermesh.order.id"


P = ParamSpec("P")


@dataclass(frozen=True)
class _Batch:
    tracer: trace.Tracer
    system: str
    destination: str


# The batch a consumer is handling in this task, for ``message_span``.
_batch: ContextVar[_Batch | None] = ContextVar("ordermesh_bus_batch", default=None)


def publish_attributes(system: str, destination: str, operation: str = "publish") -> dict[str, AttributeValue]:
    return {
        SYSTEM: system,
        DESTINATION: destination,
        OPERATION: operation,
        OPERATION_TYPE: operation,
        OPERATION_NAME: operation,
    }


@contextmanager
def publishing(
    tracer: trace.Tracer,
    system: str,
    destination: str,
    *,
    links: Sequence[Link] = (),
    count: int = 0,
    attributes: dict[str, AttributeValue] | None = None,
) -> Iterator[trace.Span]:
    """A PRODUCER span ``publish <destination>``; ``count``: a batch of that many."""
    parent = trace.get_current_span()
    if parent.get_span_context().is_valid and not parent.is_recording():
        # An unsampled trace: the providers sample children as their parent was
        # (ParentBased), so the child would record nothing either; the parent
        # stands in (an event then carries its context, which no one sees), and the
        # hot path (every reservation at a low sampling ratio) skips making a span.
        yield parent
        return
    values = attributes if attributes is not None else publish_attributes(system, destination)
    with tracer.start_as_current_span(
        f"publish {destination}",
        kind=SpanKind.PRODUCER,
        attributes=values,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if count and span.is_recording():
            span.set_attribute(BATCH_COUNT, count)
        with _failure_status(span):
            yield span


def creating(build: Callable[P, bytes], tracer: trace.Tracer, system: str, destination: str) -> Callable[P, bytes]:
    """``build`` (an event builder that stamps the current context into the event)
    run in a PRODUCER span ``create <destination>``: for an event written to an
    outbox, the context it carries is a span of its own (the one its consumers
    link to), child of the work that made it; the relay's span publishes it later."""
    attributes = publish_attributes(system, destination, "create")

    def built_in_span(*args: P.args, **kwargs: P.kwargs) -> bytes:
        parent = trace.get_current_span()
        if parent.get_span_context().is_valid and not parent.is_recording():
            return build(*args, **kwargs)  # an unsampled trace: as in ``publishing``
        with tracer.start_as_current_span(
            f"create {destination}", kind=SpanKind.PRODUCER, attributes=attributes, record_exception=False
        ):
            return build(*args, **kwargs)

    return built_in_span


@contextmanager
def consuming(
    tracer: trace.Tracer, system: str, destination: str, group: str, messages: Sequence[Message]
) -> Iterator[trace.Span]:
    """The CONSUMER span of one batch, linked to every message's producer."""
    where: dict[str, AttributeValue] = {SYSTEM: system, DESTINATION: destination, CONSUMER_GROUP: group}
    with tracer.start_as_current_span(
        f"consume {destination}",
        kind=SpanKind.CONSUMER,
        attributes={
            **where,
            OPERATION: "process",
            OPERATION_TYPE: "process",
            OPERATION_NAME: "consume",
            BATCH_COUNT: len(messages),
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        linked: list[tuple[Message, Link]] = []
        if span.is_recording():  # decoding every envelope is for recorded spans only
            for message in messages:
                if (link := producer_link(message)) is not None:
                    span.add_link(link.context)
                    linked.append((message, link))
        token = _batch.set(_Batch(tracer, system, destination))
        started = time.time_ns()
        failed = False
        try:
            with _failure_status(span):
                yield span
        except Exception:
            failed = True
            raise
        finally:
            _batch.reset(token)
            _processed_in_producer_traces(tracer, f"process {destination}", span, linked, started, failed, where)


def _processed_in_producer_traces(
    tracer: trace.Tracer,
    name: str,
    batch: trace.Span,
    linked: list[tuple[Message, Link]],
    started: int,
    failed: bool,
    where: dict[str, AttributeValue],
) -> None:
    """One ``process`` span per message in its *producer's* trace (its parent
    is the producer span), covering the batch that handled it and linked to the
    batch span: an order's own trace then shows every context that worked on
    it (the order context's consumers too), not only the synchronous calls,
    while the batch span still links to all of them."""
    batch_link = [Link(batch.get_span_context())]
    for message, link in linked:
        parent = trace.set_span_in_context(trace.NonRecordingSpan(link.context))
        span = tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                **where,
                OPERATION_TYPE: "process",
                MESSAGE_ID: message.id,
                ORDER_ID: message.order_id,
            },
            links=batch_link,
            start_time=started,
        )
        if failed:
            span.set_status(Status(StatusCode.ERROR, "batch failed"))
        span.end()


@contextmanager
def message_span(message: Message, name: str = "process") -> Iterator[trace.Span]:
    """A span for one message of the batch being handled (``<name> <destination>``),
    child of the batch span and linked to the message's producer; outside a
    consumer's batch (a handler called directly, in a test) nothing is recorded."""
    batch = _batch.get()
    if batch is None:
        yield trace.INVALID_SPAN
        return
    link = producer_link(message)
    with (
        batch.tracer.start_as_current_span(
            f"{name} {batch.destination}",
            kind=SpanKind.INTERNAL,
            attributes={
                SYSTEM: batch.system,
                DESTINATION: batch.destination,
                OPERATION_TYPE: "process",
                MESSAGE_ID: message.id,
                ORDER_ID: message.order_id,
            },
            links=[link] if link is not None else None,
            record_exception=False,
            set_status_on_exception=False,
        ) as span,
        _failure_status(span),
    ):
        yield span


def producer_link(message: Message) -> Link | None:
    """A link to the span that produced ``message``: from its transport
    properties (RocketMQ copies the context there), else from its envelope."""
    if "traceparent" in message.headers:
        return span_link(message.headers)
    return envelope_link(message.payload)


def envelope_link(payload: bytes) -> Link | None:
    try:
        envelope = decode_envelope(payload)
    except Exception:  # noqa: BLE001 - an unreadable payload has no link; its handler rejects it
        return None
    return span_link(envelope.trace_context)


@contextmanager
def _failure_status(span: trace.Span) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if span.is_recording():
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise
