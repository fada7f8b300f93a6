"""What the gateway needs from the mesh, as a Protocol. The adapter is
``remote.py`` (gRPC through breakers); unit tests pass fakes.

The gateway's domain is the translation between HTTP and the mesh's contract,
so the port speaks the contract's messages. A failure is a
``mesh.errors.DomainError`` carrying the gRPC code, message and
``google.rpc.Status`` details the mesh answered with.
"""

from __future__ import annotations

from typing import Protocol

from ordermesh.analytics.v1 import analytics_pb2
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.order.v1 import order_pb2


class Mesh(Protocol):
    async def list_products(self, request: catalog_pb2.ListProductsRequest) -> catalog_pb2.ListProductsResponse: ...

    async def get_product(self, request: catalog_pb2.GetProductRequest) -> catalog_pb2.Product: ...

    async def place_order(self, request: checkout_pb2.PlaceOrderRequest) -> checkout_pb2.PlaceOrderResponse: ...

    async def get_order(self, request: order_pb2.GetOrderRequest) -> order_pb2.Order: ...

    async def list_orders(self, request: order_pb2.ListOrdersRequest) -> order_pb2.ListOrdersResponse: ...

    async def cancel_order(self, request: order_pb2.CancelOrderRequest) -> order_pb2.Order: ...

    async def review_order(self, request: order_pb2.ReviewOrderRequest) -> order_pb2.Order: ...

    async def top_products(self, request: analytics_pb2.TopProductsRequest) -> analytics_pb2.TopProductsResponse: ...

    async def sales_summary(self, request: analytics_pb2.SalesSummaryRequest) -> analytics_pb2.SalesSummaryResponse: ...

    async def search_orders(self, request: analytics_pb2.SearchOrdersRequest) -> analytics_pb2.SearchOrdersResponse: ...
