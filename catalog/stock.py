"""Stock rules shared by the Redis and SQL paths: lines, limits, shortages, markers."""

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


@dataclass(frozen=True)
class Earlier:
    """An order reserved before: what it reserved, and whether it was released
    since (None: it was taken on the SQL path, whose record says)."""

    lines: list[Line]
    released: bool | None


class RedisDown(Exception):
    """Redis did not answer (connection refused, reset or timed out): this
    replica sells from unallocated SQL stock until Redis answers again."""


class EpochChanged(Exception):
    """Redis or SQL is in another epoch than this process thought: sync first."""


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


def decode_lines(text: str) -> list[Line]:
    lines = []
    for part in filter(None, text.split(",")):
        pid, _, qty = part.partition("=")
        lines.append(Line(pid, int(qty)))
    return lines


# A reservation marker in Redis is "<source>|<lines>": the source is the epoch
# whose counters reserve.lua deducted, or SQL_SOURCE for a reservation taken on
# the SQL path (put there by the relay, so a retry on Redis finds it).
SQL_SOURCE = "sql"


def marker(source: str, lines: Iterable[Line]) -> str:
    return f"{source}|{encode_lines(lines)}"


def parse_marker(text: str) -> tuple[str, list[Line]]:
    source, _, lines = text.partition("|")
    return source, decode_lines(lines)
