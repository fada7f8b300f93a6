"""The RocketMQ side of the bus metrics and spans, against fakes (no broker):
the consumer's batch sizes, lag and batch span links; the dead-letter intake's
count by source and reason; the forwarder's count and PRODUCER span. The
embedded transport's are in tests/integration/test_bus_metrics.py."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from mesh.bus import BatchOutcome, Message
from mesh.bus.memory import MemoryDeadLetters
from mesh.bus.metrics import BusMetrics
from mesh.bus.rocketmq import Forwarder, RocketClient, RocketConsumer, RocketConsumerConfig
from mesh.bus.rocketmq.dead_letters import DeadLetterIntake, RedisReasons
from mesh.clock import utc_now
from mesh.telemetry import MAX_LINKS, build_tracer_provider, span_link
from ordermesh.events.v1 import events_pb2
from tests.unit.test_rocket_consumer_hold import FakeMessage, FakeSimpleConsumer, InlineClient


@dataclass
class BornMessage(FakeMessage):
    born_timestamp: int = 0


def traceparent(n: int) -> str:
    return f"00-{n:032x}-{n:016x}-01"


def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider("test", environment="test", sampling_ratio=1.0)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def nothing_failed(batch: list[Message]) -> BatchOutcome:
    return BatchOutcome()


async def test_a_rocketmq_batch_is_measured_and_its_span_links_every_producer() -> None:
    registry = CollectorRegistry()
    provider, exporter = traced()
    minute_ago = int(time.time() * 1000) - 60_000
    batch = [
        BornMessage(
            "ordermesh-order-placed",
            f"m{n}",
            properties={"order_id": f"o{n}", "stream_id": f"{minute_ago + n}-0", "traceparent": traceparent(n + 1)},
            born_timestamp=int(time.time() * 1000),  # when the forwarder sent it; the stream time is older
        )
        for n in range(3)
    ]
    fake = FakeSimpleConsumer([cast(list[FakeMessage], batch), []])
    consumer = RocketConsumer(
        cast(RocketClient, InlineClient()),
        "ordermesh-order",
        {"ordermesh-order-placed": nothing_failed},
        RocketConsumerConfig(),
        provider.get_tracer("test"),
        metrics=BusMetrics.of(registry),
    )
    consumer._consumer = cast(Any, fake)

    assert await consumer.poll() == 3
    labels = {"group": "order"}  # the bus group, as on the embedded transport
    assert registry.get_sample_value("ordermesh_consumer_batch_size_count", labels) == 1
    assert registry.get_sample_value("ordermesh_consumer_batch_size_sum", labels) == 3
    assert 59 < (registry.get_sample_value("ordermesh_consumer_lag_seconds", labels) or 0) < 90
    spans = exporter.get_finished_spans()
    [span] = [s for s in spans if s.name.startswith("consume")]
    assert (span.name, span.kind) == ("consume ordermesh-order-placed", SpanKind.CONSUMER)
    assert {(link.context.trace_id, link.context.span_id) for link in span.links} == {(n, n) for n in (1, 2, 3)}
    assert (span.attributes or {})["messaging.system"] == "rocketmq"
    # And one `process` span per message in its producer's trace, linked back to the batch.
    processed = [s for s in spans if s.name == "process ordermesh-order-placed"]
    assert {(s.context.trace_id, s.parent.span_id if s.parent else 0) for s in processed} == {(n, n) for n in (1, 2, 3)}
    assert all([link.context.span_id for link in s.links] == [span.context.span_id] for s in processed)

    assert await consumer.poll() == 0
    assert registry.get_sample_value("ordermesh_consumer_lag_seconds", labels) == 0.0


class NotedReasons:
    def __init__(self, reasons: dict[str, str]) -> None:
        self.reasons = reasons

    async def take(self, group: str, message_id: str) -> str | None:
        return self.reasons.get(message_id)

    async def forget(self, group: str, message_ids: list[str]) -> None:
        return None


def envelope(order_id: str) -> bytes:
    return events_pb2.Envelope(
        event_id=uuid.uuid4().hex,
        order_id=order_id,
        trace_context={"traceparent": traceparent(int(order_id[1:]) + 100)},
        order_cancelled=events_pb2.OrderCancelled(reason="test"),
    ).SerializeToString()


async def test_dead_letters_from_the_brokers_dlq_are_counted_by_source_and_reason() -> None:
    registry = CollectorRegistry()
    noted = NotedReasons({"a": "deferred too long: order o1 not inserted yet", "b": "the handler refuses it"})
    intake = DeadLetterIntake(
        MemoryDeadLetters(), cast(RedisReasons, noted), utc_now, 5, metrics=BusMetrics.of(registry)
    )
    topic = "ordermesh-order-updates"

    def dead(message_id: str, payload: bytes) -> Message:
        return Message(message_id, "%DLQ%ordermesh-order", "Event", "o1", payload, headers={"topic": topic})

    await intake([dead("a", envelope("o1")), dead("b", envelope("o2")), dead("c", b"\xff\xfe poison")])

    def count(reason: str) -> float | None:
        return registry.get_sample_value("ordermesh_dead_letters_total", {"source": topic, "reason": reason})

    assert (count("deferred_too_long"), count("retries_exhausted"), count("decode")) == (1, 1, 1)


class OneRejected(Forwarder):
    """The broker stores all but one (no broker here: _relay is the part that talks to it)."""

    async def _relay(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        outcome.fail(batch[0], "rejected by RocketMQ")
        return outcome


async def test_the_forwarder_counts_what_it_relayed_in_a_producer_span_linked_to_each_event() -> None:
    registry = CollectorRegistry()
    provider, exporter = traced()
    forwarder = OneRejected(
        cast(RocketClient, None),
        cast(Any, None),
        "ordermesh-order-status",
        tracer=provider.get_tracer("test"),
        relayed=BusMetrics.of(registry).relayed.labels("events:order-status"),
    )
    batch = [Message(f"{n}-0", "events:order-status", "OrderCancelled", f"o{n}", envelope(f"o{n}")) for n in range(3)]
    outcome = await forwarder(batch)
    assert list(outcome.failed) == ["0-0"]
    assert registry.get_sample_value("ordermesh_forwarder_relayed_events_total", {"stream": "events:order-status"}) == 2
    [span] = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("publish ordermesh-order-status", SpanKind.PRODUCER)
    assert (span.attributes or {}).items() >= {
        "messaging.system": "rocketmq",
        "messaging.destination.name": "ordermesh-order-status",
        "messaging.operation.type": "publish",
        "messaging.batch.message_count": 3,
    }.items()
    assert {link.context.span_id for link in span.links} == {100, 101, 102}


def test_a_providers_spans_keep_more_links_than_the_largest_batch() -> None:
    provider, exporter = traced()
    links = [link for n in range(1, 2001) if (link := span_link({"traceparent": traceparent(n)})) is not None]
    with provider.get_tracer("test").start_as_current_span("batch", links=links):
        pass
    [span] = exporter.get_finished_spans()
    assert len(span.links) == 2000 <= MAX_LINKS
