"""Redis key names of the catalog context (no other context reads them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "catalog"
    # The outbox stream the order context consumes OrderPlaced from.
    order_stream: str = "events:order-placed"

    @property
    def stock_prefix(self) -> str:
        return f"{self.prefix}:stock:"

    def stock(self, product_id: str) -> str:
        return self.stock_prefix + product_id

    def reserved(self, order_id: str) -> str:
        return f"{self.prefix}:reserved:{order_id}"

    def released(self, order_id: str) -> str:
        return f"{self.prefix}:released:{order_id}"

    @property
    def journal(self) -> str:
        return f"{self.prefix}:journal"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:journal:dead"
