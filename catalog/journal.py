"""Stock journal entries as the Lua scripts write them (pure parsing)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class MalformedEntry(ValueError):
    """An entry the flusher can never apply: it is dead-lettered, not retried."""


@dataclass(frozen=True)
class JournalEntry:
    entry_id: str
    product_id: str
    delta: int
    reason: str
    order_id: str


def parse(entry_id: str, fields: Mapping[bytes, bytes]) -> JournalEntry:
    try:
        product_id = fields[b"product_id"].decode()
        delta = int(fields[b"delta"])
        reason = fields.get(b"reason", b"").decode()
        order_id = fields.get(b"order_id", b"").decode()
    except (KeyError, ValueError, UnicodeDecodeError) as error:
        raise MalformedEntry(f"journal entry {entry_id}: {error!r}") from None
    if not product_id:
        raise MalformedEntry(f"journal entry {entry_id}: empty product_id")
    return JournalEntry(entry_id, product_id, delta, reason, order_id)


def totals(entries: Iterable[JournalEntry]) -> dict[str, int]:
    """Net change per product: one UPDATE per batch instead of one per entry."""
    result: dict[str, int] = {}
    for entry in entries:
        result[entry.product_id] = result.get(entry.product_id, 0) + entry.delta
    return result
