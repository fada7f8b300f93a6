"""The handler of both streams the read model is fed from.

Acknowledgement policy: a message is acknowledged once its event is taken
into the read model, in the transaction that records its id (or recognised
as taken before). A malformed event, or one a column cannot hold, fails alone
(retried, then dead-lettered); SQL down raises, and the whole batch waits and
is delivered again (the bus counts no attempt for an outage). Nothing is
deferred: a status change whose OrderPlaced has not arrived is kept and
counted when the order arrives (analytics.projection).
"""

from __future__ import annotations

from analytics.events import parse
from analytics.facts import Event, MalformedEvent
from analytics.ports import EventSink
from mesh.bus import BatchOutcome, Message
from mesh.clock import Clock


class OrderEvents:
    """OrderPlaced (the catalog's stream) and OrderStatusChanged (the order
    outbox's stream, every shard's changes): one handler, one transaction per batch."""

    def __init__(self, sink: EventSink, clock: Clock) -> None:
        self._sink = sink
        self._clock = clock

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        parsed: list[tuple[Message, Event]] = []
        for message in batch:
            try:
                parsed.append((message, parse(message.payload)))
            except MalformedEvent as error:
                outcome.fail(message, str(error))
        refused = await self._sink.apply([event for _, event in parsed], self._clock())
        for message, event in parsed:
            if (reason := refused.get(event.event_id)) is not None:
                outcome.fail(message, reason)
        return outcome
