"""Routing orders to their shard database: by order id, or by user id."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from common.order_ids import shard_of_order, shard_of_user
from order.store import OrderStore

T = TypeVar("T")


class Shards:
    def __init__(self, stores: list[OrderStore]) -> None:
        if not stores:
            raise ValueError("at least one order database is needed")
        self.stores = stores

    def for_user(self, user_id: str) -> OrderStore:
        return self.stores[shard_of_user(user_id, len(self.stores))]

    def for_order(self, order_id: str, user_id: str = "") -> OrderStore | None:
        """The shard in the id; for ids not minted by checkout, the user's shard."""
        shard = shard_of_order(order_id, len(self.stores))
        if shard is not None:
            return self.stores[shard]
        return self.for_user(user_id) if user_id else None

    def group(
        self, items: Iterable[T], route: Callable[[T], tuple[str, str]]
    ) -> tuple[dict[OrderStore, list[T]], list[T]]:
        """Items per shard, in their order, by ``route(item)`` = (order id, user id);
        and the items no shard takes."""
        groups: dict[OrderStore, list[T]] = {}
        unrouted: list[T] = []
        for item in items:
            store = self.for_order(*route(item))
            if store is None:
                unrouted.append(item)
            else:
                groups.setdefault(store, []).append(item)
        return groups, unrouted
