"""Stock rules shared by the Redis and SQL paths: lines, limits, shortages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mesh.errors import FailedPrecondition, PreconditionViolation


@dataclass(frozen=True)
class Line:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class Limits:
    max_lines: int = 100
    max_quantity: int = 1000


@dataclass(frozen=True)
class Shortage:
    product_id: str
    requested: int
    available: int


class InsufficientStock(FailedPrecondition):
    def __init__(self, shortages: list[Shortage]) -> None:
        self.shortages = shortages
        super().__init__(
            "; ".join(f"product {s.product_id}: requested {s.requested}, available {s.available}" for s in shortages),
            [
                PreconditionViolation(
                    "INSUFFICIENT_STOCK",
                    f"products/{s.product_id}",
                    f"requested {s.requested}, available {s.available}",
                )
                for s in shortages
            ],
        )


class CounterMissing(Exception):
    """Redis has no counter for these products yet: load them from SQL first."""

    def __init__(self, product_ids: list[str]) -> None:
        super().__init__(", ".join(product_ids))
        self.product_ids = product_ids


class RedisDown(Exception):
    """Redis did not answer: the SQL path takes over."""


def merge(lines: Iterable[Line]) -> list[Line]:
    """One line per product (quantities summed), in product-id order.

    Sorted so that the SQL path locks rows in one global order (no deadlocks)
    and so the reservation marker is canonical.
    """
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.product_id] = totals.get(line.product_id, 0) + line.quantity
    return [Line(pid, qty) for pid, qty in sorted(totals.items())]


def encode_lines(lines: Iterable[Line]) -> str:
    return ",".join(f"{line.product_id}={line.quantity}" for line in lines)


# Marks a reservation marker copied into Redis from a SQL-path reservation, as
# opposed to one written by reserve.lua.
COPIED_FROM_SQL = "sql:"


def decode_lines(text: str) -> list[Line]:
    lines = []
    for part in filter(None, text.removeprefix(COPIED_FROM_SQL).split(",")):
        pid, _, qty = part.partition("=")
        lines.append(Line(pid, int(qty)))
    return lines
