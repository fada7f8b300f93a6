"""What the order domain needs from the outside, as Protocols. The adapters
are ``remote.Remote`` (payment, shipping and catalog over gRPC, behind
breakers) and the bus publisher; unit tests pass fakes. The order store
(``store.py``) is SQL by design (its compare-and-set and event-id idempotency
are SQL transactions), so tests run it on SQLite rather than against a fake."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from order.orders import Order
    from order.remote import PaymentState


class Gateway(Protocol):
    """Payment, shipping and catalog, in the order lifecycle's terms."""

    async def payment(self, order_id: str) -> PaymentState:
        """What payment holds for the order ("NONE" if it was never charged)."""

    async def refund(self, order_id: str, reason: str) -> None:
        """Refund what was captured; nothing captured is not an error."""

    async def captured(self, created_before: datetime, page_token: str, page_size: int) -> tuple[list[str], str]:
        """A page of captured payments' order ids, oldest first, and the token after the last of them."""

    async def shipment(self, order_id: str) -> str | None:
        """The tracking id of the order's shipment, None if there is none."""

    async def release(self, order_id: str) -> None: ...

    async def ship(self, order: Order) -> str:
        """Ship (idempotent per order); the tracking id."""


class Publisher(Protocol):
    """Appends events to a stream (the outbox relay's destination)."""

    async def publish(self, stream: str, fields: dict[str, str | bytes]) -> str: ...

    async def publish_many(self, stream: str, entries: Sequence[dict[str, str | bytes]]) -> None: ...
