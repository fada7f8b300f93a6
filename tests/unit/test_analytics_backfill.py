"""The backfill use case (analytics.backfill) with fakes at its ports: every order of
every shard, page after page, each page one call to the read model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from analytics.backfill import ShardBackfill, backfill
from analytics.facts import Backfilled, Line, Order, Status
from mesh.money import Money

NOW = datetime(2030, 1, 2, tzinfo=UTC)


def shard_orders(shard: int, count: int) -> list[Backfilled]:
    lines = (Line("sku-1", 1, Money.of("USD", 2)),)
    return [
        Backfilled(
            Order(f"o{shard}-{n:08x}", "ada", "ada@example.com", Money.of("USD", 2), NOW, lines), Status.PAID, NOW
        )
        for n in range(count)
    ]


class Shard:
    """analytics.ports.OrderSource over a list, remembering where each read began."""

    def __init__(self, orders: list[Backfilled]) -> None:
        self.orders = orders
        self.reads: list[str] = []

    async def orders_after(self, after: str, limit: int) -> list[Backfilled]:
        self.reads.append(after)
        return [o for o in self.orders if o.order_id > after][:limit]


class Sink:
    """analytics.ports.BackfillSink that takes each order once: the second time, it changes nothing."""

    def __init__(self) -> None:
        self.pages: list[list[str]] = []
        self.known: set[str] = set()

    async def backfill(self, orders: Sequence[Backfilled], now: datetime) -> int:
        ids = [o.order_id for o in orders]
        self.pages.append(ids)
        new = set(ids) - self.known
        self.known |= new
        return len(new)


async def test_every_order_of_every_shard_page_by_page() -> None:
    shards = [Shard(shard_orders(0, 5)), Shard(shard_orders(1, 4)), Shard([])]
    sink = Sink()
    done = await backfill(shards, sink, lambda: NOW, page=2)
    assert done == [ShardBackfill(0, 5, 5), ShardBackfill(1, 4, 4), ShardBackfill(2, 0, 0)]
    assert [len(page) for page in sink.pages] == [2, 2, 1, 2, 2]
    assert sink.known == {o.order_id for shard in shards for o in shard.orders}
    # Each read goes on after the last order of the one before; a full last page costs one empty read.
    assert shards[0].reads == ["", "o0-00000001", "o0-00000003"]
    assert shards[1].reads == ["", "o1-00000001", "o1-00000003"]


async def test_a_second_backfill_reads_everything_and_changes_nothing() -> None:
    shards = [Shard(shard_orders(0, 3))]
    sink = Sink()
    await backfill(shards, sink, lambda: NOW, page=10)
    assert await backfill(shards, sink, lambda: NOW, page=10) == [ShardBackfill(0, 3, 0)]
