"""Redis key names of the catalog context (no other context reads them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "catalog"
    # The outbox stream the order context consumes OrderPlaced from.
    order_stream: str = "events:order-placed"

    @property
    def epoch(self) -> str:
        """Which life of Redis the counters belong to (written when SQL starts one)."""
        return f"{self.prefix}:epoch"

    @property
    def epoch_lease(self) -> str:
        """The lease one replica holds while it changes the epoch."""
        return f"{self.prefix}-stock-epoch"

    def stock_prefix(self, epoch: str) -> str:
        return f"{self.prefix}:stock:{epoch}:"

    def stock(self, epoch: str, product_id: str) -> str:
        # The epoch is part of the name: counters of another life of Redis (or
        # of another SQL database) are never read, so never sold.
        return self.stock_prefix(epoch) + product_id

    def reserved(self, order_id: str) -> str:
        return f"{self.prefix}:reserved:{order_id}"

    def released(self, order_id: str) -> str:
        return f"{self.prefix}:released:{order_id}"

    def refill(self, refill_id: str) -> str:
        return f"{self.prefix}:refill:{refill_id}"

    @property
    def journal(self) -> str:
        return f"{self.prefix}:journal"

    def stale_journal(self, epoch: str) -> str:
        return f"{self.prefix}:journal:stale:{epoch}"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:journal:dead"

    @property
    def relay_lease(self) -> str:
        return f"{self.prefix}-stock-outbox"
