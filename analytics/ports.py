"""What the analytics use cases need from the outside, as Protocols. The
adapters are ``store.py`` (the read model) and ``shards.py`` (the order
shards, for the backfill); unit tests pass fakes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from analytics.facts import Backfilled, Event
    from analytics.reports import OrderFilter, OrderSummary, ProductSales, SalesRow


class EventSink(Protocol):
    """Takes events into the read model."""

    async def apply(self, events: Sequence[Event], now: datetime) -> dict[str, str]:
        """Take ``events`` (in delivery order), each once; durable on return.
        Returns the ids of those that cannot be stored, with the reason
        (the others are stored)."""


class ReportStore(Protocol):
    async def top_products(self, day: date, limit: int) -> list[ProductSales]:
        """Products of orders created on ``day`` and not cancelled, most units first."""

    async def sales(self, start: datetime, end: datetime, by_day: bool) -> list[SalesRow]:
        """Per creation hour (or day) in [start, end), status and currency; empty ones left out."""

    async def search(self, where: OrderFilter, before: tuple[datetime, str] | None, limit: int) -> list[OrderSummary]:
        """Placed orders matching ``where``, newest first (created_at, order id), strictly before ``before``."""


class BackfillSink(Protocol):
    async def backfill(self, orders: Sequence[Backfilled], now: datetime) -> int:
        """Take ``orders`` by the rules the events follow; durable on return.
        Returns how many entries of the read model they changed."""


class OrderSource(Protocol):
    """One order shard, read-only."""

    async def orders_after(self, after: str, limit: int) -> list[Backfilled]:
        """Up to ``limit`` of the shard's orders with ids after ``after``, in id order."""
