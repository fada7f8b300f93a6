"""CatalogService servicer: validate, call the domain, map to the wire."""

from __future__ import annotations

from typing import Any

import grpc

from catalog.engine import Reserved, StockEngine
from catalog.metrics import StockMetrics
from catalog.products import Catalog, Product
from catalog.stock import InsufficientStock, Limits, Line
from common.checks import Checks
from mesh.errors import InvalidArgument, NotFound
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.common.v1 import common_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class CatalogService(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(
        self, catalog: Catalog, stock: StockEngine, limits: Limits, metrics: StockMetrics | None = None
    ) -> None:
        self._catalog = catalog
        self._stock = stock
        self._limits = limits
        self._metrics = metrics

    async def ListProducts(
        self, request: catalog_pb2.ListProductsRequest, context: Context
    ) -> catalog_pb2.ListProductsResponse:
        page = await self._catalog.list_products(request.page_size, request.page_token)
        levels = await self._stock.stock_levels([p.id for p in page.products])
        return catalog_pb2.ListProductsResponse(
            products=[to_proto(p, levels.get(p.id, p.stock)) for p in page.products],
            next_page_token=page.next_page_token,
        )

    async def GetProduct(self, request: catalog_pb2.GetProductRequest, context: Context) -> catalog_pb2.Product:
        check = Checks()
        check.identifier(request.id, "id", max_length=64)
        check.raise_if_any()
        product = await self._catalog.get_product(request.id)
        levels = await self._stock.stock_levels([product.id])
        return to_proto(product, levels.get(product.id, product.stock))

    async def ReserveStock(self, request: catalog_pb2.ReserveStockRequest, context: Context) -> catalog_pb2.Reservation:
        try:
            reserved = await self._reserve(request)
        except InsufficientStock:
            self._count("short")
            raise
        except (InvalidArgument, NotFound):  # a bad field, an unknown product, mixed currencies
            self._count("invalid")
            raise
        self._count("reserved")
        return catalog_pb2.Reservation(
            order_id=reserved.order_id,
            items=[common_pb2.LineItem(product_id=line.product_id, quantity=line.quantity) for line in reserved.lines],
            already_reserved=reserved.already_reserved,
            released=reserved.released,
            priced_items=reserved.priced,
            total=reserved.total.to_proto(),
            initial_status=reserved.initial_status,
        )

    async def _reserve(self, request: catalog_pb2.ReserveStockRequest) -> Reserved:
        check = Checks()
        check.order_id(request.order_id)
        check.line_items(request.items, max_lines=self._limits.max_lines, max_quantity=self._limits.max_quantity)
        if check.require(request.HasField("draft"), "draft", "is required"):
            check_draft(check, request.draft)
        check.raise_if_any()
        return await self._stock.reserve(
            request.order_id, [Line(i.product_id, i.quantity) for i in request.items], request.draft
        )

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.outcomes.labels(outcome).inc()

    async def ReleaseStock(
        self, request: catalog_pb2.ReleaseStockRequest, context: Context
    ) -> catalog_pb2.ReleaseStockResponse:
        check = Checks()
        check.order_id(request.order_id)
        check.raise_if_any()
        return catalog_pb2.ReleaseStockResponse(released=await self._stock.release(request.order_id))

    async def SetStock(self, request: catalog_pb2.SetStockRequest, context: Context) -> catalog_pb2.Product:
        check = Checks()
        check.identifier(request.product_id, "product_id", max_length=64)
        check.require(request.stock >= 0, "stock", f"must not be negative, got {request.stock}")
        check.raise_if_any()
        product = await self._stock.set_stock(request.product_id, request.stock)
        return to_proto(product, product.stock)


# The statuses an order may start in; UNSPECIFIED means PENDING.
INITIAL_STATUSES = (common_pb2.ORDER_STATUS_UNSPECIFIED, common_pb2.PENDING, common_pb2.AWAITING_REVIEW)


def check_draft(check: Checks, draft: common_pb2.OrderDraft) -> None:
    """Everything OrderPlaced carries to the order database, before a unit is deducted:
    an order that cannot be stored would keep its stock and never exist."""
    check.require(bool(draft.user_id), "draft.user_id", "is required")
    check.text(draft.user_id, "draft.user_id", 128)
    check.text(draft.request_id, "draft.request_id", 128)
    check.text(draft.email, "draft.email", 200)
    check.address(draft.address, "draft.address")
    if draft.HasField("shipping_cost"):
        check.money(draft.shipping_cost, "draft.shipping_cost", positive=False)
    if draft.HasField("review_at"):
        check.money(draft.review_at, "draft.review_at", positive=False)
    check.require(
        draft.initial_status in INITIAL_STATUSES,
        "draft.initial_status",
        f"must be PENDING or AWAITING_REVIEW, got {common_pb2.OrderStatus.Name(draft.initial_status)}"
        if draft.initial_status in common_pb2.OrderStatus.values()
        else f"must be PENDING or AWAITING_REVIEW, got {draft.initial_status}",
    )


def to_proto(product: Product, stock: int) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        id=product.id,
        name=product.name,
        description=product.description,
        price=product.price.to_proto(),
        stock=stock,
        categories=product.categories,
    )
