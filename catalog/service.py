"""CatalogService servicer: validate, call the domain, map to the wire.

ReserveStock, ReleaseStock and SetStock arrive with the stock engine; until
then they answer UNIMPLEMENTED.
"""

from __future__ import annotations

from typing import Any

import grpc

from catalog.products import Catalog, Product
from mesh.errors import Unimplemented
from mesh.validation import Checker
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class CatalogService(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def ListProducts(
        self, request: catalog_pb2.ListProductsRequest, context: Context
    ) -> catalog_pb2.ListProductsResponse:
        page = await self._catalog.list_products(request.page_size, request.page_token)
        return catalog_pb2.ListProductsResponse(
            products=[to_proto(p) for p in page.products], next_page_token=page.next_page_token
        )

    async def GetProduct(self, request: catalog_pb2.GetProductRequest, context: Context) -> catalog_pb2.Product:
        check = Checker()
        check.identifier(request.id, "id", max_length=64)
        check.raise_if_any()
        return to_proto(await self._catalog.get_product(request.id))

    async def ReserveStock(self, request: catalog_pb2.ReserveStockRequest, context: Context) -> catalog_pb2.Reservation:
        raise Unimplemented("ReserveStock is not implemented yet")

    async def ReleaseStock(
        self, request: catalog_pb2.ReleaseStockRequest, context: Context
    ) -> catalog_pb2.ReleaseStockResponse:
        raise Unimplemented("ReleaseStock is not implemented yet")

    async def SetStock(self, request: catalog_pb2.SetStockRequest, context: Context) -> catalog_pb2.Product:
        raise Unimplemented("SetStock is not implemented yet")


def to_proto(product: Product) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        id=product.id,
        name=product.name,
        description=product.description,
        price=product.price.to_proto(),
        stock=product.stock,
        categories=product.categories,
    )
