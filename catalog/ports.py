"""What the catalog's domain needs from the outside, as Protocols: adapters
(``store.py``: SQL) implement them, tests pass fakes. The stock path's
adapters (``redis_stock.py``, ``sql_path.py``, ``ledger.py``) are its own
ports' only implementations: two real stores (Redis and SQL) are what it is
about, so it is tested against real ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from catalog.products import Product


class ProductStore(Protocol):
    async def page_after(self, last_id: str, limit: int) -> list[Product]:
        """Products ordered by id, strictly after ``last_id``."""

    async def get(self, product_id: str) -> Product | None: ...
