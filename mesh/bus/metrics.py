"""Prometheus metrics of the event bus: consumer lag and batch sizes, dead
letters, events forwarded to RocketMQ. Every label is bounded: a consumer
group, a stream or topic name, a reason class; never an order or message id."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mesh.bus.messages import Message, decode_envelope

BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 200, 500, 1000, 2000)

# Why a message was dead-lettered, as a bounded class (the full reason is in
# the dead letter itself).
DECODE = "decode"  # its payload is no events.v1.Envelope: no handler will ever take it
RETRIES_EXHAUSTED = "retries_exhausted"  # a handler failed it on every attempt
DEFERRED_TOO_LONG = "deferred_too_long"  # it waited ("not yet") past the longest deferral
REASONS = (DECODE, RETRIES_EXHAUSTED, DEFERRED_TOO_LONG)

_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, BusMetrics] = weakref.WeakKeyDictionary()


class BusMetrics:
    """One per process registry (``of``): several consumers and forwarders share it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "ordermesh_consumer_lag_seconds",
            "Embedded transport: age of the oldest message the group has not acknowledged (pending, "
            "or not read yet) over the streams it reads. RocketMQ: age of the oldest message of the "
            "consumer's last receive, or held by it; 0 when a receive found nothing.",
            ["group"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "ordermesh_consumer_batch_size",
            "Messages per batch handed to a handler.",
            ["group"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.dead_letters = Counter(
            "ordermesh_dead_letters",
            "Messages dead-lettered, by stream or topic they came from and reason class "
            "(decode, retries_exhausted, deferred_too_long).",
            ["source", "reason"],
            registry=registry,
        )
        self.relayed = Counter(
            "ordermesh_forwarder_relayed_events",
            "Events the forwarders sent from a stream to its RocketMQ topic.",
            ["stream"],
            registry=registry,
        )
        # Events per call = relayed / send calls: near FORWARDER_SEND_BATCH while the
        # proxy stores calls of several messages whole, near 1 when they fall back.
        self.send_calls = Counter(
            "ordermesh_forwarder_send_calls",
            "SendMessage calls the forwarders made, each with up to FORWARDER_SEND_BATCH events "
            "(the RocketMQ client's own retries not counted).",
            ["stream"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "ordermesh_forwarder_fallback_events",
            "Events the forwarders sent again one per call because the call of several that "
            "carried them was not stored whole.",
            ["stream"],
            registry=registry,
        )

    def source(self, name: str) -> None:
        """Every dead-letter series of a stream or topic from the start (at 0), so
        ``rate()`` and alerts see zeros, not gaps, before the first dead letter."""
        for reason in REASONS:
            self.dead_letters.labels(name, reason)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> BusMetrics:
        """The registry's bus metrics, made on first use (a metric name registers once)."""
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = cls(registry)
        return metrics


def dead_letter_class(message: Message, *, deferred: bool) -> str:
    """The reason class of a message being dead-lettered."""
    if deferred:
        return DEFERRED_TOO_LONG
    try:
        decode_envelope(message.payload)
    except Exception:  # noqa: BLE001 - any parse failure is the class
        return DECODE
    return RETRIES_EXHAUSTED
