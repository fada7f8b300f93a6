"""The order events, fanned out in-process to the SSE connections of this replica.

One reader (``gateway.tail``) reads the streams and calls :meth:`Feed.publish`;
each connection subscribes here, so Redis is read once per process however
many browsers watch.

Positions are the streams' own entry ids, the same in every replica: an
operator event's SSE id is a :class:`Cursor`, the position reached in both
streams once it was sent. A client that reconnects, to this replica or
another, sends it back as Last-Event-ID and gets what came after it in either
stream, from the ring of recent events, or ``reset`` when the ring no longer
reaches back that far (or events were lost: see ``gap``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

from gateway import schemas
from mesh.bus.redis_streams import parse_entry_id

Stream = Literal["placed", "status"]
EntryId = tuple[int, int]
START: EntryId = (0, 0)


def entry_text(entry: EntryId) -> str:
    return f"{entry[0]}-{entry[1]}"


@dataclass(frozen=True)
class Cursor:
    """How far both streams have been read: every entry at or below these ids."""

    placed: EntryId = START
    status: EntryId = START

    def of(self, stream: Stream) -> EntryId:
        return self.placed if stream == "placed" else self.status

    def at(self, stream: Stream, entry: EntryId) -> Cursor:
        return replace(self, placed=entry) if stream == "placed" else replace(self, status=entry)

    def covers(self, stream: Stream, entry: EntryId) -> bool:
        return entry <= self.of(stream)

    def reaches_back_to(self, floor: Cursor) -> bool:
        """True when nothing between ``floor`` and this cursor is unknown."""
        return self.placed >= floor.placed and self.status >= floor.status

    def text(self) -> str:
        return f"{entry_text(self.placed)}_{entry_text(self.status)}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        placed, sep, status = text.partition("_")
        if not sep:
            return None
        try:
            return cls(parse_entry_id(placed), parse_entry_id(status))
        except ValueError:
            return None


@dataclass(frozen=True)
class OperatorMessage:
    """One ``event: order`` of /events: its data, where it sits, and its SSE id."""

    stream: Stream
    entry: EntryId
    cursor: Cursor
    event: schemas.OperatorEvent


class Reset:
    """Events were lost for this subscriber: it should reload what it shows."""


class Closed:
    """The subscription is over (the gateway stops, or the subscriber fell too far behind)."""


RESET, CLOSED = Reset(), Closed()
Item = OperatorMessage | Reset | Closed


class Inbox:
    """What one operator connection has not sent yet, bounded: a subscriber
    that falls ``limit`` events behind is closed instead of holding memory; its
    client reconnects with Last-Event-ID and resumes from the ring.

    ``after``: what the client already has (its Last-Event-ID); events at or
    below it are skipped, live ones too (it may come from a replica that had
    read further than this one)."""

    def __init__(self, limit: int, after: Cursor | None = None) -> None:
        self._items: deque[OperatorMessage | Reset] = deque()
        self._limit = limit
        self._after = after
        self._wake = asyncio.Event()
        self.closed = False

    def put(self, item: OperatorMessage | Reset) -> None:
        if self.closed:
            return
        if (
            isinstance(item, OperatorMessage)
            and self._after is not None
            and self._after.covers(item.stream, item.entry)
        ):
            return
        if len(self._items) >= self._limit:
            self._items.clear()
            self.close()
            return
        self._items.append(item)
        self._wake.set()

    def _has(self, message: OperatorMessage) -> bool:
        return self._after is not None and self._after.covers(message.stream, message.entry)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def get(self, timeout: float) -> Item | None:  # noqa: ASYNC109 - the keepalive period, not a deadline
        """The next item; None when ``timeout`` passed with nothing (time for a keepalive)."""
        if not self._items and not self.closed:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        if self._items:
            return self._items.popleft()
        return CLOSED


class OrderWatch:
    """Wakes one per-order connection when an event for its order arrives (or
    events may have been lost); the connection then reads the order again."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.changed = asyncio.Event()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.changed.set()


class Feed:
    def __init__(self, ring_size: int, inbox_limit: int) -> None:
        self._ring: deque[OperatorMessage] = deque(maxlen=ring_size)
        self._inbox_limit = inbox_limit
        self._inboxes: set[Inbox] = set()
        self._watches: dict[str, set[OrderWatch]] = {}
        self.position = Cursor()
        # The ring holds every event after this position (it starts where the
        # reader starts, and moves up as the ring drops its oldest events).
        self._floor = Cursor()
        self.closed = False

    def start_at(self, position: Cursor) -> None:
        """Where the reader starts: nothing before it is known here."""
        self.position = self._floor = position

    # -- the reader's side ------------------------------------------------------

    def publish(self, stream: Stream, entry: EntryId, order_id: str, event: schemas.OperatorEvent | None) -> None:
        """An entry of ``stream``, in stream order; ``event`` None: not an operator event."""
        if self.position.covers(stream, entry):
            return  # read twice (the reader retried after a failure)
        self.position = self.position.at(stream, entry)
        for watch in self._watches.get(order_id, ()):
            watch.changed.set()
        if event is None:
            return
        if len(self._ring) == self._ring.maxlen:
            dropped = self._ring[0]
            self._floor = self._floor.at(dropped.stream, max(dropped.entry, self._floor.of(dropped.stream)))
        message = OperatorMessage(stream, entry, self.position, event)
        self._ring.append(message)
        for inbox in self._inboxes:
            inbox.put(message)

    def gap(self, stream: Stream, lost_up_to: EntryId) -> None:
        """Entries of ``stream`` up to ``lost_up_to`` were trimmed (or Redis lost
        them) before they were read: every subscriber may have missed events."""
        self.position = self.position.at(stream, max(lost_up_to, self.position.of(stream)))
        self._floor = self._floor.at(stream, self.position.of(stream))
        for inbox in self._inboxes:
            inbox.put(RESET)
        for watches in self._watches.values():
            for watch in watches:
                watch.changed.set()

    def rewound(self, stream: Stream, to: EntryId) -> None:
        """The stream now ends below where it was read (Redis restarted empty):
        read it again from ``to``, and tell every subscriber."""
        self.position = self.position.at(stream, to)
        self.gap(stream, to)

    def close(self) -> None:
        """The gateway stops: every subscription ends."""
        self.closed = True
        for inbox in self._inboxes:
            inbox.close()
        for watches in self._watches.values():
            for watch in watches:
                watch.close()

    # -- the connections' side --------------------------------------------------

    def subscribe(self, after: Cursor | None) -> Inbox:
        """A live subscription to operator events; ``after``: a client's
        Last-Event-ID, answered from the ring (or with a reset) first."""
        inbox = Inbox(self._inbox_limit, after)
        if self.closed:
            inbox.close()
            return inbox
        if after is not None:
            if after.reaches_back_to(self._floor):
                for message in self._ring:
                    inbox.put(message)
            else:
                inbox.put(RESET)
        self._inboxes.add(inbox)
        return inbox

    def unsubscribe(self, inbox: Inbox) -> None:
        self._inboxes.discard(inbox)

    def watch(self, order_id: str) -> OrderWatch:
        watch = OrderWatch(order_id)
        if self.closed:
            watch.close()
        else:
            self._watches.setdefault(order_id, set()).add(watch)
        return watch

    def unwatch(self, watch: OrderWatch) -> None:
        watches = self._watches.get(watch.order_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.order_id]

    @property
    def subscribers(self) -> int:
        return len(self._inboxes) + sum(len(w) for w in self._watches.values())
