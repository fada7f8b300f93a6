"""Reading orders: by id (routed by the shard in the id) and by user, paged."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import InvalidArgument, NotFound
from mesh.paging import decode_position, encode_position
from order.orders import Order
from order.shards import Shards

DEFAULT_PAGE = 20
MAX_PAGE = 100


@dataclass(frozen=True)
class Page:
    orders: list[Order]
    next_page_token: str


class OrderQueries:
    def __init__(self, shards: Shards) -> None:
        self._shards = shards

    async def get(self, order_id: str) -> Order:
        store = self._shards.for_order(order_id)
        order = await store.get(order_id) if store is not None else None
        if order is None:
            raise NotFound("order", order_id)
        return order

    async def by_user(self, user_id: str, page_size: int, page_token: str) -> Page:
        if page_size < 0:
            raise InvalidArgument.one("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        rows = await self._shards.for_user(user_id).by_user(user_id, size + 1, decode_position(page_token))
        page = rows[:size]
        more = len(rows) > size
        return Page(page, encode_position(page[-1].created_at, page[-1].order_id) if more else "")
