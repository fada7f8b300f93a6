"""Charges and refunds: the payment context's domain rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from mesh.clock import Clock
from mesh.errors import FailedPrecondition, NotFound, PreconditionViolation, Unavailable
from mesh.faults import FaultInjection
from mesh.money import Money
from payment.cards import decline_reason, last4


class Status(StrEnum):
    CAPTURED = "CAPTURED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


@dataclass(frozen=True)
class Payment:
    order_id: str
    transaction_id: str
    status: Status
    amount: Money
    decline_reason: str
    card_last4: str
    refund_reason: str = ""


class PaymentStore(Protocol):
    async def insert_or_get(self, payment: Payment, now: datetime) -> Payment:
        """Store ``payment`` unless one exists for its order; return the stored one."""

    async def get(self, order_id: str) -> Payment | None: ...

    async def refund(self, order_id: str, reason: str, now: datetime) -> Payment | None:
        """CAPTURED -> REFUNDED; returns the payment as it now stands (None if absent)."""


class Payments:
    def __init__(
        self,
        store: PaymentStore,
        *,
        clock: Clock,
        faults: FaultInjection | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._faults = faults or FaultInjection()

    async def charge(self, order_id: str, amount: Money, card_number: str) -> Payment:
        """Capture or decline, once per order: a retry returns the stored payment."""
        if self._faults.should_fail():
            raise Unavailable("payment processor unavailable (injected failure)")
        reason = decline_reason(card_number)
        candidate = Payment(
            order_id=order_id,
            transaction_id=f"txn_{uuid.uuid4().hex}",
            status=Status.DECLINED if reason else Status.CAPTURED,
            amount=amount,
            decline_reason=reason,
            card_last4=last4(card_number),
        )
        stored = await self._store.insert_or_get(candidate, self._clock())
        if stored.amount != amount:
            raise FailedPrecondition(
                f"order {order_id} was already charged {stored.amount}, not {amount}",
                [PreconditionViolation("AMOUNT_MISMATCH", f"order/{order_id}", "a different amount was charged")],
            )
        await self._faults.delay()
        return stored

    async def refund(self, order_id: str, reason: str) -> Payment:
        payment = await self._store.refund(order_id, reason, self._clock())
        if payment is None:
            raise NotFound("payment for order", order_id)
        if payment.status is Status.DECLINED:
            raise FailedPrecondition(f"order {order_id} was declined: nothing to refund")
        return payment

    async def get(self, order_id: str) -> Payment:
        payment = await self._store.get(order_id)
        if payment is None:
            raise NotFound("payment for order", order_id)
        return payment
