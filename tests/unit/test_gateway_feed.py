"""The in-process fan-out of order events: cursors, the ring that answers
Last-Event-ID, resets, slow subscribers, and per-order wake-ups."""

from __future__ import annotations

from gateway.feed import CLOSED, RESET, Cursor, EntryId, Feed, OperatorMessage, Stream
from tests.unit.gateway_fakes import operator_event


def publish(feed: Feed, stream: Stream, entry: EntryId, order_id: str = "o1") -> None:
    feed.publish(stream, entry, order_id, operator_event(order_id, stream))


async def drain(feed: Feed, after: Cursor | None) -> list[object]:
    inbox = feed.subscribe(after)
    found: list[object] = []
    while (item := await inbox.get(0.001)) is not None:
        found.append(item)
        if item is CLOSED:
            break
    return found


def entries(items: list[object]) -> list[tuple[str, EntryId]]:
    return [(i.stream, i.entry) for i in items if isinstance(i, OperatorMessage)]


def test_a_cursor_reads_back_what_it_wrote_and_refuses_anything_else() -> None:
    cursor = Cursor((1700000000000, 3), (1700000000123, 0))
    assert cursor.text() == "1700000000000-3_1700000000123-0"
    assert Cursor.parse(cursor.text()) == cursor
    assert Cursor.parse("garbage") is None
    assert Cursor.parse("1-x_2-0") is None


async def test_events_carry_the_position_reached_in_both_streams() -> None:
    feed = Feed(ring_size=10, inbox_limit=10)
    inbox = feed.subscribe(None)
    publish(feed, "placed", (5, 0))
    publish(feed, "status", (6, 0))
    first, second = await inbox.get(0.01), await inbox.get(0.01)
    assert isinstance(first, OperatorMessage) and isinstance(second, OperatorMessage)
    assert first.cursor.text() == "5-0_0-0"
    assert second.cursor.text() == "5-0_6-0"


async def test_a_resume_gets_what_came_after_its_cursor_in_either_stream() -> None:
    feed = Feed(ring_size=10, inbox_limit=10)
    publish(feed, "placed", (5, 0))
    publish(feed, "status", (6, 0))
    publish(feed, "placed", (7, 0))
    publish(feed, "status", (8, 0))
    # Another replica read the streams interleaved differently: its cursor says
    # placed up to 7, status up to 0.
    assert entries(await drain(feed, Cursor((7, 0), (0, 0)))) == [("status", (6, 0)), ("status", (8, 0))]
    assert entries(await drain(feed, Cursor((7, 0), (8, 0)))) == []


async def test_live_events_a_resumed_client_already_has_are_not_sent_again() -> None:
    feed = Feed(ring_size=10, inbox_limit=10)
    inbox = feed.subscribe(Cursor((9, 0), (0, 0)))  # from a replica ahead of this one
    publish(feed, "placed", (9, 0))
    publish(feed, "placed", (10, 0))
    item = await inbox.get(0.01)
    assert isinstance(item, OperatorMessage) and item.entry == (10, 0)


async def test_a_cursor_older_than_the_ring_gets_a_reset_then_the_live_stream() -> None:
    feed = Feed(ring_size=2, inbox_limit=10)
    feed.start_at(Cursor((4, 0), (4, 0)))
    for ms in (5, 6, 7):
        publish(feed, "placed", (ms, 0))
    # (5, 0) fell out of the ring: a client at 4-0 missed it.
    assert (await drain(feed, Cursor((4, 0), (4, 0))))[:1] == [RESET]
    assert entries(await drain(feed, Cursor((5, 0), (4, 0)))) == [("placed", (6, 0)), ("placed", (7, 0))]
    # Before where this replica started: unknown here.
    assert (await drain(feed, Cursor((3, 0), (4, 0))))[:1] == [RESET]


async def test_a_gap_resets_every_subscriber_and_old_cursors() -> None:
    feed = Feed(ring_size=10, inbox_limit=10)
    publish(feed, "status", (5, 0))
    inbox = feed.subscribe(None)
    watch = feed.watch("o-other")
    feed.gap("status", (9, 0))
    assert await inbox.get(0.01) is RESET
    assert watch.changed.is_set()
    assert feed.position.of("status") == (9, 0)
    assert (await drain(feed, Cursor((0, 0), (5, 0))))[:1] == [RESET]
    publish(feed, "status", (8, 0))  # below the gap: already accounted for
    assert await inbox.get(0.001) is None


async def test_a_duplicate_entry_is_published_once() -> None:
    feed = Feed(ring_size=10, inbox_limit=10)
    publish(feed, "status", (5, 0))
    publish(feed, "status", (5, 0))
    assert len(entries(await drain(feed, Cursor()))) == 1


async def test_a_subscriber_too_far_behind_is_closed_and_can_resume() -> None:
    feed = Feed(ring_size=100, inbox_limit=3)
    inbox = feed.subscribe(None)
    for ms in range(1, 6):
        publish(feed, "placed", (ms, 0))
    first = await inbox.get(0.01)
    assert first is CLOSED  # what it had queued is dropped; its client reconnects
    assert len(entries(await drain(feed, Cursor((2, 0), (0, 0))))) == 3


async def test_a_watch_wakes_for_its_order_only_and_closes_with_the_feed() -> None:
    feed = Feed(ring_size=10, inbox_limit=10)
    mine, other = feed.watch("o1"), feed.watch("o2")
    feed.publish("status", (5, 0), "o1", None)
    assert mine.changed.is_set() and not other.changed.is_set()
    feed.unwatch(other)
    inbox = feed.subscribe(None)
    feed.close()
    assert mine.closed
    assert await inbox.get(0.01) is CLOSED
    assert feed.watch("o3").closed and (await feed.subscribe(None).get(0.01)) is CLOSED
    feed.unwatch(mine)
    feed.unsubscribe(inbox)
    assert feed.subscribers == 0
