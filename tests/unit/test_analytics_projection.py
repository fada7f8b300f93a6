"""The read model's rules (analytics.projection), on plain values: each event once,
the newest status wins, a status may come before its order, cancelled orders
are not sales, a backfilled order counts once whatever comes before or after
it, and the outcome does not depend on the order of arrival."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from analytics.facts import BACKFILL, Backfilled, Entry, Event, Fact, Line, Order, Placed, Status, StatusChanged
from analytics.projection import DayKey, HourKey, project
from mesh.money import Money

T0 = datetime(2030, 1, 2, 10, 15, tzinfo=UTC)
HOUR = datetime(2030, 1, 2, 10, tzinfo=UTC)
DAY = date(2030, 1, 2)
NANOS = 1_000_000_000
K = TypeVar("K")


def usd(units: int) -> Money:
    return Money.of("USD", units)


def order(order_id: str, at: datetime = T0, *lines: Line) -> Order:
    lines = lines or (Line("sku-1", 2, usd(10)), Line("sku-2", 1, usd(5)))
    total = Money("USD", sum(line.revenue.nanos_total for line in lines))
    return Order(order_id, f"user-{order_id}", f"{order_id}@example.com", total, at, lines)


def placed(o: Order, event_id: str = "", initial: Status = Status.PENDING) -> Placed:
    return Placed(event_id or f"placed-{o.order_id}", o, initial)


def changed(order_id: str, status: Status, minutes: float, event_id: str = "") -> StatusChanged:
    return StatusChanged(event_id or f"{order_id}-{status}", order_id, status, T0 + timedelta(minutes=minutes))


class Model:
    """The read model in memory: what the SQL store keeps, applied the way it applies it."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.seen: set[str] = set()
        self.hourly: dict[HourKey, tuple[int, int]] = {}
        self.sales: dict[DayKey, tuple[int, int]] = {}

    def apply(self, events: Sequence[Fact]) -> None:
        current = {e.order_id: self.entries[e.order_id] for e in events if e.order_id in self.entries}
        projection = project(events, self.seen, current)
        self.entries.update(projection.entries)
        self.seen |= {event_id for event_id, _ in projection.applied}
        _add(self.hourly, projection.hourly)
        _add(self.sales, projection.sales)

    def state(self) -> tuple[dict[str, Entry], dict[HourKey, tuple[int, int]], dict[DayKey, tuple[int, int]]]:
        """What the queries can see (a sum that went back to zero is as good as none)."""
        return self.entries, _kept(self.hourly), _kept(self.sales)


def _add(sums: dict[K, tuple[int, int]], deltas: dict[K, tuple[int, int]]) -> None:
    for key, (count, nanos) in deltas.items():
        was_count, was_nanos = sums.get(key, (0, 0))
        sums[key] = (was_count + count, was_nanos + nanos)


def _kept(sums: dict[K, tuple[int, int]]) -> dict[K, tuple[int, int]]:
    return {key: value for key, value in sums.items() if value != (0, 0)}


def test_a_placed_order_counts_in_its_hour_under_its_status_and_in_its_days_sales() -> None:
    model = Model()
    model.apply([placed(order("o0-a"))])
    assert model.entries["o0-a"].status is Status.PENDING
    assert model.hourly == {(HOUR, Status.PENDING, "USD"): (1, 25 * NANOS)}
    assert model.sales == {(DAY, "sku-1", "USD"): (2, 20 * NANOS), (DAY, "sku-2", "USD"): (1, 5 * NANOS)}


def test_a_status_change_moves_the_order_between_statuses_of_its_creation_hour() -> None:
    model = Model()
    model.apply([placed(order("o0-a")), changed("o0-a", Status.PAID, 90)])  # paid in the next hour
    assert model.state()[1] == {(HOUR, Status.PAID, "USD"): (1, 25 * NANOS)}
    assert model.sales[(DAY, "sku-1", "USD")] == (2, 20 * NANOS)  # PENDING -> PAID: still sold


def test_a_cancelled_order_leaves_the_sales_and_stays_counted_as_cancelled() -> None:
    model = Model()
    model.apply([placed(order("o0-a"))])
    model.apply([changed("o0-a", Status.CANCELLED, 1)])
    _, hourly, sales = model.state()
    assert hourly == {(HOUR, Status.CANCELLED, "USD"): (1, 25 * NANOS)}
    assert sales == {}


def test_a_status_before_its_order_is_kept_and_counts_when_the_order_arrives() -> None:
    model = Model()
    model.apply([changed("o0-a", Status.PAID, 2)])
    entry = model.entries["o0-a"]
    assert (entry.status, entry.order) == (Status.PAID, None)
    assert model.state()[1:] == ({}, {})  # nothing to count without the order
    model.apply([placed(order("o0-a"))])  # its initial PENDING is older than any change
    assert model.entries["o0-a"].status is Status.PAID
    assert model.state()[1] == {(HOUR, Status.PAID, "USD"): (1, 25 * NANOS)}


def test_a_cancellation_before_its_order_keeps_the_order_out_of_the_sales() -> None:
    model = Model()
    model.apply([changed("o0-a", Status.CANCELLED, 2), placed(order("o0-a"))])
    assert model.state()[1:] == ({(HOUR, Status.CANCELLED, "USD"): (1, 25 * NANOS)}, {})


def test_an_older_status_arriving_late_changes_nothing() -> None:
    model = Model()
    model.apply([placed(order("o0-a")), changed("o0-a", Status.SHIPPING, 5)])
    model.apply([changed("o0-a", Status.PAID, 3)])
    assert model.entries["o0-a"].status is Status.SHIPPING
    assert "o0-a-PAID" in model.seen  # taken (a replay skips it) with no effect


def test_a_final_status_stands_against_a_non_final_one_stamped_later() -> None:
    # Two order replicas whose clocks disagree: CANCELLED made on the slow one.
    model = Model()
    model.apply([placed(order("o0-a")), changed("o0-a", Status.CANCELLED, 1), changed("o0-a", Status.PAID, 2)])
    assert model.entries["o0-a"].status is Status.CANCELLED


def test_the_same_event_twice_counts_once_in_a_batch_and_across_batches() -> None:
    model = Model()
    events: list[Event] = [placed(order("o0-a")), placed(order("o0-a")), changed("o0-a", Status.PAID, 1)]
    model.apply(events)
    model.apply(events)
    assert model.state()[1] == {(HOUR, Status.PAID, "USD"): (1, 25 * NANOS)}
    assert model.sales[(DAY, "sku-1", "USD")] == (2, 20 * NANOS)


def test_a_second_order_placed_for_the_same_order_id_is_ignored() -> None:
    model = Model()
    model.apply([placed(order("o0-a"))])
    model.apply([placed(order("o0-a", T0, Line("sku-9", 7, usd(1))), event_id="another")])
    assert (DAY, "sku-9", "USD") not in model.sales
    assert model.hourly == {(HOUR, Status.PENDING, "USD"): (1, 25 * NANOS)}


def test_a_change_that_leaves_the_sums_as_they_were_writes_no_delta() -> None:
    current = Model()
    current.apply([placed(order("o0-a")), changed("o0-a", Status.PAID, 1)])
    projection = project([changed("o0-a", Status.SHIPPING, 2)], current.seen, current.entries)
    assert projection.sales == {}  # PAID -> SHIPPING: still sold
    assert projection.hourly == {
        (HOUR, Status.PAID, "USD"): (-1, -25 * NANOS),
        (HOUR, Status.SHIPPING, "USD"): (1, 25 * NANOS),
    }


def events_of_a_busy_hour() -> list[Event]:
    """Four orders, two shards, every kind of history, with ties and a status before its order."""
    a, b = order("o0-a"), order("o1-b", T0 + timedelta(hours=1), Line("sku-3", 3, usd(7)))
    c, d = order("o0-c", T0 + timedelta(days=1)), order("o1-d")
    events: list[Event] = [
        placed(a),
        changed("o0-a", Status.PENDING, 0.1),
        changed("o0-a", Status.PAID, 1),
        changed("o0-a", Status.SHIPPING, 2),
        changed("o0-a", Status.SHIP_FAILED, 3),
        changed("o0-a", Status.SHIPPING, 4, event_id="o0-a-retry"),
        changed("o0-a", Status.SHIPPED, 5),
        placed(b, initial=Status.AWAITING_REVIEW),
        changed("o1-b", Status.PENDING, 1),
        changed("o1-b", Status.CANCELLED, 2),
        changed("o0-c", Status.PAID, 1500),  # its OrderPlaced comes last below
        placed(c),
        changed("o1-d", Status.PAID, 1, event_id="tie-1"),
        changed("o1-d", Status.PENDING, 1, event_id="tie-2"),  # the same microsecond: progress decides
        placed(d),
    ]
    return events


def test_any_order_of_arrival_any_batches_and_any_duplicates_give_the_same_read_model() -> None:
    events = events_of_a_busy_hour()
    expected = Model()
    expected.apply(events)
    entries, hourly, sales = expected.state()
    assert {oid: e.status for oid, e in entries.items()} == {
        "o0-a": Status.SHIPPED,
        "o1-b": Status.CANCELLED,
        "o0-c": Status.PAID,
        "o1-d": Status.PAID,
    }
    assert hourly == {
        (HOUR, Status.SHIPPED, "USD"): (1, 25 * NANOS),
        (HOUR, Status.PAID, "USD"): (1, 25 * NANOS),
        (HOUR + timedelta(hours=1), Status.CANCELLED, "USD"): (1, 21 * NANOS),
        (HOUR + timedelta(days=1), Status.PAID, "USD"): (1, 25 * NANOS),
    }
    assert sales == {
        (DAY, "sku-1", "USD"): (4, 40 * NANOS),
        (DAY, "sku-2", "USD"): (2, 10 * NANOS),
        (DAY + timedelta(days=1), "sku-1", "USD"): (2, 20 * NANOS),
        (DAY + timedelta(days=1), "sku-2", "USD"): (1, 5 * NANOS),
    }
    rng = random.Random(17)
    for _ in range(200):
        arrivals = events + rng.sample(events, k=rng.randint(0, len(events)))  # redeliveries
        assert in_random_batches(arrivals, rng).state() == (entries, hourly, sales)


def in_random_batches(arrivals: Sequence[Fact], rng: random.Random) -> Model:
    """A model fed ``arrivals`` shuffled, in batches of 1 to 6."""
    arrivals = rng.sample(arrivals, k=len(arrivals))
    model = Model()
    while arrivals:
        size = rng.randint(1, 6)
        model.apply(arrivals[:size])
        arrivals = arrivals[size:]
    return model


# -- backfilled orders ------------------------------------------------------------

# The order context stamps a history row with the time its transaction began,
# and the event it relays for the change a moment later.
HISTORY_LEAD = timedelta(microseconds=1)


def backfilled(events: Sequence[Event]) -> list[Backfilled]:
    """What the order shards hold once ``events`` happened: each placed order with
    its newest status, stamped as its history row is (just before the event)."""
    model = Model()
    model.apply(events)
    found = []
    for entry in model.entries.values():
        assert entry.order is not None and entry.stamp is not None
        found.append(Backfilled(entry.order, entry.status, entry.stamp.at - HISTORY_LEAD))
    return found


def test_a_backfilled_order_counts_as_its_events_do_and_is_marked() -> None:
    events = events_of_a_busy_hour()
    by_events, by_backfill = Model(), Model()
    by_events.apply(events)
    by_backfill.apply(backfilled(events))
    assert by_backfill.state()[1:] == by_events.state()[1:]
    assert {e.status for e in by_backfill.entries.values()} == {Status.SHIPPED, Status.CANCELLED, Status.PAID}
    assert {e.stamp.event_id for e in by_backfill.entries.values() if e.stamp} == {BACKFILL}
    assert by_backfill.seen == set()  # nothing recorded: it is no event


def test_a_second_backfill_changes_nothing() -> None:
    model = Model()
    facts = backfilled(events_of_a_busy_hour())
    model.apply(facts)
    projection = project(facts, model.seen, model.entries)
    assert (projection.entries, projection.hourly, projection.sales, projection.placed) == ({}, {}, {}, [])


def test_a_backfilled_status_stands_against_older_changes_and_yields_to_newer_ones() -> None:
    model = Model()
    model.apply([Backfilled(order("o0-a"), Status.SHIPPING, T0 + timedelta(minutes=2))])
    model.apply([placed(order("o0-a")), changed("o0-a", Status.PAID, 1)])  # older: nothing moves
    assert model.state()[1] == {(HOUR, Status.SHIPPING, "USD"): (1, 25 * NANOS)}
    model.apply([changed("o0-a", Status.CANCELLED, 3)])
    assert model.state()[1:] == ({(HOUR, Status.CANCELLED, "USD"): (1, 25 * NANOS)}, {})
    model.apply([Backfilled(order("o0-a"), Status.SHIPPING, T0 + timedelta(minutes=2))])  # a stale backfill
    assert model.entries["o0-a"].status is Status.CANCELLED


def test_a_backfill_places_an_order_only_a_change_was_seen_of() -> None:
    model = Model()
    model.apply([changed("o0-a", Status.CANCELLED, 5)])
    model.apply([Backfilled(order("o0-a"), Status.PAID, T0 + timedelta(minutes=1))])  # read before the cancel
    entry = model.entries["o0-a"]
    assert (entry.status, entry.order) == (Status.CANCELLED, order("o0-a"))
    assert model.state()[1:] == ({(HOUR, Status.CANCELLED, "USD"): (1, 25 * NANOS)}, {})


def test_backfills_anywhere_among_the_events_give_the_read_model_of_the_events() -> None:
    """Once every event has arrived the newest change is an event's (stamped after
    its history row), so the entries themselves come out as the events alone make them."""
    events = events_of_a_busy_hour()
    expected = Model()
    expected.apply(events)
    facts = backfilled(events)
    rng = random.Random(29)
    for _ in range(200):
        arrivals: list[Fact] = [*events, *rng.sample(events, k=rng.randint(0, len(events))), *facts]
        arrivals += rng.sample(facts, k=rng.randint(0, len(facts)))  # backfilled twice
        assert in_random_batches(arrivals, rng).state() == expected.state()
