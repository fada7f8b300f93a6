"""Catalog reads against real SQL and Redis: seed on first start, paging, NOT_FOUND."""

from __future__ import annotations

import grpc
import pytest

from catalog.bootstrap import bootstrap
from catalog.settings import CatalogSettings
from mesh.local.procs import RedisServer
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tests.support import serving


def settings_for(database_url: str, redis_url: str) -> CatalogSettings:
    return CatalogSettings(
        grpc_host="127.0.0.1", grpc_port=0, metrics_port=0, database_url=database_url, redis_url=redis_url
    )


async def test_seeded_catalogue_pages_and_gets(database_url: str, redis_server: RedisServer) -> None:
    async with serving(await bootstrap(settings_for(database_url, redis_server.url))) as (_server, channel):
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        ids: list[str] = []
        token = ""
        while True:
            page = await stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=5, page_token=token))
            assert len(page.products) <= 5
            ids += [p.id for p in page.products]
            if not (token := page.next_page_token):
                break
        assert len(ids) == 12 and ids == sorted(ids)
        product = await stub.GetProduct(catalog_pb2.GetProductRequest(id="sku-1001"))
        assert product.name == "Vintage Typewriter"
        assert (product.price.units, product.price.nanos, product.stock) == (67, 990_000_000, 25)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetProduct(catalog_pb2.GetProductRequest(id="sku-none"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.GetProduct(catalog_pb2.GetProductRequest(id=""))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "id:" in (bad.value.details() or "")

    # A second start does not seed twice.
    async with serving(await bootstrap(settings_for(database_url, redis_server.url))) as (_server, channel):
        page = await catalog_pb2_grpc.CatalogServiceStub(channel).ListProducts(
            catalog_pb2.ListProductsRequest(page_size=100)
        )
        assert len(page.products) == 12
