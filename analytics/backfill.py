"""Catching the read model up from the order shards (``python -m analytics backfill``).

A fresh read model, or one that missed events (its group was made after the
streams had moved on, a dead letter was never replayed), learns every order
the shards hold, with its status now. It is safe to run while the consumers
run, and to run again: each order is taken like an OrderPlaced followed by a
change to its current status, stamped with the time the order context made
that change (analytics.projection), so neither a second backfill nor the
events that arrive after it count anything twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analytics.ports import BackfillSink, OrderSource
from mesh.clock import Clock


@dataclass(frozen=True)
class ShardBackfill:
    shard: int
    read: int  # orders read from the shard
    changed: int  # entries of the read model they added or moved to a newer status


async def backfill(shards: Sequence[OrderSource], sink: BackfillSink, clock: Clock, page: int) -> list[ShardBackfill]:
    """Every order of every shard, ``page`` orders per read and per transaction:
    a shard of millions is never held in memory, nor one long transaction."""
    done: list[ShardBackfill] = []
    for number, shard in enumerate(shards):
        read = changed = 0
        after = ""
        while True:
            orders = await shard.orders_after(after, page)
            if orders:
                changed += await sink.backfill(orders, clock())
                read += len(orders)
                after = orders[-1].order_id
            if len(orders) < page:
                break
        done.append(ShardBackfill(number, read, changed))
    return done
