"""What the payment domain needs from the outside, as Protocols: adapters
(``store.py``: SQL) implement them, tests pass fakes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from payment.charges import Payment, Status


class PaymentStore(Protocol):
    async def insert_or_get(self, payment: Payment, now: datetime) -> Payment:
        """Store ``payment`` unless one exists for its order; return the stored one."""

    async def get(self, order_id: str) -> Payment | None: ...

    async def refund(self, order_id: str, reason: str, now: datetime) -> Payment | None:
        """CAPTURED -> REFUNDED; returns the payment as it now stands (None if absent)."""

    async def page(
        self, status: Status | None, created_before: datetime | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[Payment]:
        """Payments in (created_at, order_id) order, strictly after ``after``."""
