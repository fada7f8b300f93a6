"""Charges and refunds: the payment context's domain rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from mesh.clock import Clock
from mesh.errors import FailedPrecondition, InvalidArgument, NotFound, PreconditionViolation, Unavailable
from mesh.faults import FaultInjection
from mesh.money import Money
from mesh.paging import decode_position, encode_position
from payment.cards import decline_reason, last4
from payment.ports import PaymentStore


class Status(StrEnum):
    CAPTURED = "CAPTURED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


# A refund asked for an order nothing was charged for yet (a cancel that
# overtook its charge) leaves this in the order's place: the charge, if it
# lands later, is declined instead of keeping money for a cancelled order.
VOID_PREFIX = "void_"
VOID_REASON = "the order was cancelled before it was charged"


@dataclass(frozen=True)
class Payment:
    order_id: str
    transaction_id: str
    status: Status
    amount: Money
    decline_reason: str
    card_last4: str
    refund_reason: str = ""
    created_at: datetime | None = None  # set once stored

    @property
    def voided(self) -> bool:
        return self.transaction_id.startswith(VOID_PREFIX)


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
        if stored.voided:
            return stored
        if stored.amount != amount:
            raise FailedPrecondition(
                f"order {order_id} was already charged {stored.amount}, not {amount}",
                [PreconditionViolation("AMOUNT_MISMATCH", f"order/{order_id}", "a different amount was charged")],
            )
        await self._faults.delay()
        return stored

    async def refund(self, order_id: str, reason: str) -> Payment:
        """Refund what was captured, once. With nothing charged yet, the order is
        voided: a charge that lands later is declined (FAILED_PRECONDITION now:
        nothing to refund)."""
        payment = await self._store.refund(order_id, reason, self._clock())
        if payment is None:
            void = Payment(order_id, f"{VOID_PREFIX}{uuid.uuid4().hex}", Status.DECLINED, Money("", 0), VOID_REASON, "")
            payment = await self._store.insert_or_get(void, self._clock())
            if not payment.voided:  # the charge landed meanwhile: refund it after all
                payment = await self._store.refund(order_id, reason, self._clock()) or payment
        if payment.status is Status.DECLINED:
            raise FailedPrecondition(f"order {order_id}: {payment.decline_reason}; nothing to refund")
        return payment

    async def get(self, order_id: str) -> Payment:
        payment = await self._store.get(order_id)
        if payment is None:
            raise NotFound("payment for order", order_id)
        return payment

    async def list(
        self, status: Status | None, created_before: datetime | None, page_size: int, page_token: str
    ) -> PaymentPage:
        if page_size < 0:
            raise InvalidArgument.one("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        # One extra row tells whether another page exists.
        rows = await self._store.page(status, created_before, decode_position(page_token), size + 1)
        page = rows[:size]
        resume = _position(page[-1]) if page else ""
        return PaymentPage(page, resume if len(rows) > size else "", resume)


DEFAULT_PAGE = 100
MAX_PAGE = 500


@dataclass(frozen=True)
class PaymentPage:
    payments: list[Payment]
    next_page_token: str  # empty on the last page
    resume_token: str  # after this page's last payment, even on the last page


def _position(last: Payment) -> str:
    assert last.created_at is not None, "a stored payment has its creation time"
    return encode_position(last.created_at, last.order_id)
