"""SQL adapter for payments. Idempotency is the primary key, not check-then-write."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.db import UnitOfWork, as_utc, is_unique_violation, reading
from mesh.money import Money
from mesh.paging import after_position
from payment.charges import Payment, Status
from payment.models import payments

_INSERT = payments.insert()


class SqlPaymentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert_or_get(self, payment: Payment, now: datetime) -> Payment:
        try:
            async with UnitOfWork(self._engine) as uow:
                # One statement object for every call: compiled once (a .values() per
                # call would build and cache-key a new statement each time).
                await uow.connection.execute(_INSERT, {**_row(payment), "created_at": now, "updated_at": now})
                await uow.commit()
            return replace(payment, created_at=now)
        except Exception as error:
            if not is_unique_violation(error):
                raise
        # Lost the race (or a retry): the winner's row is the answer.
        existing = await self.get(payment.order_id)
        if existing is None:
            raise RuntimeError(f"payment {payment.order_id} vanished after a duplicate-key error")
        return existing

    async def get(self, order_id: str) -> Payment | None:
        async with reading(self._engine) as connection:
            row = (await connection.execute(select(payments).where(payments.c.order_id == order_id))).first()
        return _payment(row._mapping) if row is not None else None

    async def refund(self, order_id: str, reason: str, now: datetime) -> Payment | None:
        async with UnitOfWork(self._engine) as uow:
            # Conditional update: only a captured payment becomes refunded, once.
            await uow.connection.execute(
                update(payments)
                .where(payments.c.order_id == order_id, payments.c.status == Status.CAPTURED.value)
                .values(status=Status.REFUNDED.value, refund_reason=reason, updated_at=now)
            )
            row = (await uow.connection.execute(select(payments).where(payments.c.order_id == order_id))).first()
            await uow.commit()
        return _payment(row._mapping) if row is not None else None

    async def page(
        self, status: Status | None, created_before: datetime | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[Payment]:
        query = select(payments)
        if status is not None:
            query = query.where(payments.c.status == status.value)
        if created_before is not None:
            query = query.where(payments.c.created_at < created_before)
        if after is not None:
            query = query.where(after_position(payments.c.created_at, payments.c.order_id, after))
        query = query.order_by(payments.c.created_at, payments.c.order_id).limit(limit)
        async with reading(self._engine) as connection:
            rows = (await connection.execute(query)).all()
        return [_payment(row._mapping) for row in rows]


def _row(payment: Payment) -> dict[str, Any]:
    return {
        "order_id": payment.order_id,
        "transaction_id": payment.transaction_id,
        "status": payment.status.value,
        "currency": payment.amount.currency,
        "units": payment.amount.nanos_total // 1_000_000_000,
        "nanos": payment.amount.nanos_total % 1_000_000_000,
        "decline_reason": payment.decline_reason,
        "card_last4": payment.card_last4,
        "refund_reason": payment.refund_reason,
    }


def _payment(row: Any) -> Payment:
    return Payment(
        order_id=row["order_id"],
        transaction_id=row["transaction_id"],
        status=Status(row["status"]),
        amount=Money.of(row["currency"], row["units"], row["nanos"]),
        decline_reason=row["decline_reason"],
        card_last4=row["card_last4"],
        refund_reason=row["refund_reason"],
        created_at=as_utc(row["created_at"]),
    )
