"""Products and paging through them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from catalog.ports import ProductStore
from mesh.errors import InvalidArgument, NotFound
from mesh.money import Money

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    description: str
    price: Money
    stock: int
    categories: tuple[str, ...]


@dataclass(frozen=True)
class Page:
    products: list[Product]
    next_page_token: str


def encode_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode()


def decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument.one("page_token", "is not a token from a previous page") from None


CachedLookup = Callable[[list[str]], Awaitable[dict[str, Product]]]


class Catalog:
    def __init__(self, store: ProductStore, cached: CachedLookup | None = None) -> None:
        """``cached``: the product cache's lookup. Checkout prices every order with
        GetProduct, so the details come from the cache; the store answers only for a
        product added since the cache's last load."""
        self._store = store
        self._cached = cached

    async def list_products(self, page_size: int, page_token: str) -> Page:
        if page_size < 0:
            raise InvalidArgument.one("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        # One extra row tells whether another page exists.
        rows = await self._store.page_after(decode_token(page_token), size + 1)
        more = len(rows) > size
        page = rows[:size]
        return Page(page, encode_token(page[-1].id) if more else "")

    async def get_product(self, product_id: str) -> Product:
        if self._cached is not None and (hit := (await self._cached([product_id])).get(product_id)):
            return hit
        product = await self._store.get(product_id)
        if product is None:
            raise NotFound("product", product_id)
        return product
