"""Shipping against real SQL: quotes, idempotent shipments under concurrency, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import func, select

from mesh.db import create_engine
from ordermesh.common.v1 import common_pb2
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from shipping.bootstrap import bootstrap
from shipping.models import shipments
from shipping.settings import ShippingSettings
from tests.support import serving

HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")
ITEMS = [common_pb2.LineItem(product_id="sku-1", quantity=2), common_pb2.LineItem(product_id="sku-2", quantity=1)]


def settings_for(database_url: str) -> ShippingSettings:
    return ShippingSettings(grpc_host="127.0.0.1", grpc_port=0, metrics_port=0, database_url=database_url)


@pytest.fixture
async def stub(database_url: str) -> AsyncIterator[shipping_pb2_grpc.ShippingServiceAsyncStub]:
    async with serving(await bootstrap(settings_for(database_url))) as (_server, channel):
        yield shipping_pb2_grpc.ShippingServiceStub(channel)


async def count_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(shipments))).scalar_one())
    finally:
        await engine.dispose()


async def test_quote_is_deterministic_and_priced_by_units(stub: shipping_pb2_grpc.ShippingServiceAsyncStub) -> None:
    one = await stub.GetQuote(shipping_pb2.GetQuoteRequest(address=HOME, items=ITEMS))
    two = await stub.GetQuote(shipping_pb2.GetQuoteRequest(address=HOME, items=ITEMS))
    assert one == two
    assert (one.cost.currency_code, one.cost.units, one.cost.nanos) == ("USD", 6, 990_000_000)
    abroad = common_pb2.Address(country="FR", zip_code="75001")
    far = await stub.GetQuote(shipping_pb2.GetQuoteRequest(address=abroad, items=ITEMS))
    assert far.cost.units == 16


async def test_fifty_concurrent_ship_orders_make_one_shipment(
    stub: shipping_pb2_grpc.ShippingServiceAsyncStub, database_url: str
) -> None:
    request = shipping_pb2.ShipOrderRequest(order_id="o-ship", address=HOME, items=ITEMS)
    replies = await asyncio.gather(*(stub.ShipOrder(request) for _ in range(50)))
    assert len({r.tracking_id for r in replies}) == 1
    assert replies[0].tracking_id.startswith("TRK-")
    assert await count_rows(database_url) == 1


async def test_restart_keeps_shipments(database_url: str) -> None:
    request = shipping_pb2.ShipOrderRequest(order_id="o-keep", address=HOME, items=ITEMS)
    async with serving(await bootstrap(settings_for(database_url))) as (_server, channel):
        shipped = await shipping_pb2_grpc.ShippingServiceStub(channel).ShipOrder(request)
    async with serving(await bootstrap(settings_for(database_url))) as (_server, channel):
        fetched = await shipping_pb2_grpc.ShippingServiceStub(channel).GetShipment(
            shipping_pb2.GetShipmentRequest(order_id="o-keep")
        )
    assert fetched.tracking_id == shipped.tracking_id


async def test_unknown_shipment_is_not_found(stub: shipping_pb2_grpc.ShippingServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetShipment(shipping_pb2.GetShipmentRequest(order_id="o-none"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_ship_order_names_the_field_and_writes_nothing(
    stub: shipping_pb2_grpc.ShippingServiceAsyncStub, database_url: str
) -> None:
    # One case on real databases; every bad-input case runs in tests/unit/test_shipping_validation.py.
    request = shipping_pb2.ShipOrderRequest(
        order_id="o-bad", address=HOME, items=[common_pb2.LineItem(product_id="sku-1", quantity=-1)]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ShipOrder(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items[0].quantity:" in (caught.value.details() or "")
    assert await count_rows(database_url) == 0
