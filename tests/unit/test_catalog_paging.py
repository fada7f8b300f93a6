"""Paging through products and reading one, with a fake store (pure logic)."""

from __future__ import annotations

import pytest

from catalog.products import Catalog, Product
from mesh.errors import InvalidArgument, NotFound
from mesh.money import Money


class FakeStore:
    def __init__(self, count: int) -> None:
        self.rows = [Product(f"p{i:03}", f"P{i}", "", Money.of("USD", i), i, ()) for i in range(count)]

    async def page_after(self, last_id: str, limit: int) -> list[Product]:
        return [p for p in self.rows if p.id > last_id][:limit]

    async def get(self, product_id: str) -> Product | None:
        return next((p for p in self.rows if p.id == product_id), None)


async def test_pages_cover_everything_once() -> None:
    catalog = Catalog(FakeStore(45))
    seen: list[str] = []
    token = ""
    while True:
        page = await catalog.list_products(20, token)
        seen += [p.id for p in page.products]
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert seen == [f"p{i:03}" for i in range(45)]


async def test_exact_multiple_has_no_empty_last_page() -> None:
    page = await Catalog(FakeStore(20)).list_products(20, "")
    assert len(page.products) == 20 and page.next_page_token == ""


async def test_bad_paging_input() -> None:
    with pytest.raises(InvalidArgument, match="page_size"):
        await Catalog(FakeStore(1)).list_products(-1, "")
    with pytest.raises(InvalidArgument, match="page_token"):
        await Catalog(FakeStore(1)).list_products(5, "!!not-base64")
    with pytest.raises(NotFound):
        await Catalog(FakeStore(1)).get_product("nope")


async def test_get_product_reads_the_cache_and_falls_back_to_the_store() -> None:
    store = FakeStore(3)
    cached = {"p000": Product("p000", "Cached", "", Money.of("USD", 1), 0, ())}
    reads: list[str] = []

    async def get(product_id: str) -> Product | None:
        reads.append(product_id)
        return next((p for p in store.rows if p.id == product_id), None)

    store.get = get  # type: ignore[method-assign]

    async def lookup(ids: list[str]) -> dict[str, Product]:
        return {i: cached[i] for i in ids if i in cached}

    catalog = Catalog(store, lookup)
    assert (await catalog.get_product("p000")).name == "Cached"
    assert reads == []
    assert (await catalog.get_product("p002")).name == "P2"  # added since the cache loaded
    assert reads == ["p002"]
    with pytest.raises(NotFound):
        await catalog.get_product("nope")
