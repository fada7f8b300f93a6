"""The mesh as the gateway calls it: one stub per service, each call behind its
dependency's breaker, with the mesh-wide deadline (PlaceOrder gets a longer one).

Unlike ``mesh.breaker.guarded``, which turns every sign of an unhealthy
dependency into UNAVAILABLE for a context's own callers, the gateway keeps the
code the mesh answered with: its HTTP contract maps DEADLINE_EXCEEDED to 504
and RESOURCE_EXHAUSTED to 429, not everything to 503. The breaker still counts
exactly those failures, and answers UNAVAILABLE while it is open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import grpc

from mesh.breaker import Breaker
from mesh.errors import Relayed
from ordermesh.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.order.v1 import order_pb2, order_pb2_grpc

T = TypeVar("T")
DEPENDENCIES = ("catalog", "checkout", "order", "analytics")


class RemoteMesh:
    """``gateway.ports.Mesh`` over gRPC."""

    def __init__(
        self,
        catalog: catalog_pb2_grpc.CatalogServiceAsyncStub,
        checkout: checkout_pb2_grpc.CheckoutServiceAsyncStub,
        order: order_pb2_grpc.OrderServiceAsyncStub,
        analytics: analytics_pb2_grpc.AnalyticsServiceAsyncStub,
        breakers: Mapping[str, Breaker],
        place_order_deadline: float,
    ) -> None:
        self._catalog = catalog
        self._checkout = checkout
        self._order = order
        self._analytics = analytics
        self._breakers = breakers
        self._place_order_deadline = place_order_deadline

    async def _call(self, dependency: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            with self._breakers[dependency].calling():
                return await call()
        except grpc.aio.AioRpcError as error:
            raise Relayed.of(error) from None

    async def list_products(self, request: catalog_pb2.ListProductsRequest) -> catalog_pb2.ListProductsResponse:
        return await self._call("catalog", lambda: self._catalog.ListProducts(request))

    async def get_product(self, request: catalog_pb2.GetProductRequest) -> catalog_pb2.Product:
        return await self._call("catalog", lambda: self._catalog.GetProduct(request))

    async def place_order(self, request: checkout_pb2.PlaceOrderRequest) -> checkout_pb2.PlaceOrderResponse:
        deadline = self._place_order_deadline
        return await self._call("checkout", lambda: self._checkout.PlaceOrder(request, timeout=deadline))

    async def get_order(self, request: order_pb2.GetOrderRequest) -> order_pb2.Order:
        return await self._call("order", lambda: self._order.GetOrder(request))

    async def list_orders(self, request: order_pb2.ListOrdersRequest) -> order_pb2.ListOrdersResponse:
        return await self._call("order", lambda: self._order.ListOrders(request))

    async def cancel_order(self, request: order_pb2.CancelOrderRequest) -> order_pb2.Order:
        return await self._call("order", lambda: self._order.CancelOrder(request))

    async def review_order(self, request: order_pb2.ReviewOrderRequest) -> order_pb2.Order:
        return await self._call("order", lambda: self._order.ReviewOrder(request))

    async def top_products(self, request: analytics_pb2.TopProductsRequest) -> analytics_pb2.TopProductsResponse:
        return await self._call("analytics", lambda: self._analytics.TopProducts(request))

    async def sales_summary(self, request: analytics_pb2.SalesSummaryRequest) -> analytics_pb2.SalesSummaryResponse:
        return await self._call("analytics", lambda: self._analytics.SalesSummary(request))

    async def search_orders(self, request: analytics_pb2.SearchOrdersRequest) -> analytics_pb2.SearchOrdersResponse:
        return await self._call("analytics", lambda: self._analytics.SearchOrders(request))
