"""While shipping is down, checkout answers a GetQuote request shipping answered
recently from memory; one never answered is still UNAVAILABLE (the chaos run
shipping-down found every PlaceOrder failing for the whole outage)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from checkout.quotes import RecentQuotes
from checkout.remote import Remote
from mesh.breaker import breakers_for
from mesh.errors import Relayed, Unavailable
from mesh.money import Money
from ordermesh.common.v1 import common_pb2
from ordermesh.shipping.v1 import shipping_pb2

HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")
ONE = [common_pb2.LineItem(product_id="sku-1004", quantity=1)]
TWO = [common_pb2.LineItem(product_id="sku-1004", quantity=2)]


class Shipping:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None  # answer every GetQuote with this error
        self.calls = 0

    async def GetQuote(self, request: shipping_pb2.GetQuoteRequest, **_: Any) -> shipping_pb2.GetQuoteResponse:
        self.calls += 1
        if self.code is not None:
            raise grpc.aio.AioRpcError(self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), "shipping says no", None)
        units = sum(item.quantity for item in request.items)
        return shipping_pb2.GetQuoteResponse(cost=Money.of("USD", 5 + units).to_proto())


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _remote(shipping: Shipping, clock: Clock, max_age: float = 60) -> Remote:
    breakers = breakers_for(["catalog", "shipping", "payment"], fail_max=1000, reset_timeout=1, metrics=None)
    return Remote(None, shipping, None, breakers, 3.0, RecentQuotes(max_age, clock=clock))  # type: ignore[arg-type]


async def test_a_recent_quote_stands_in_while_shipping_is_down() -> None:
    shipping, clock = Shipping(), Clock()
    remote = _remote(shipping, clock)
    assert await remote.quote(HOME, ONE) == Money.of("USD", 6)
    shipping.code = grpc.StatusCode.UNAVAILABLE
    clock.now = 59
    assert await remote.quote(HOME, ONE) == Money.of("USD", 6)  # the same request: remembered
    with pytest.raises(Unavailable):
        await remote.quote(HOME, TWO)  # never quoted: checkout does not price shipping itself
    clock.now = 61
    with pytest.raises(Unavailable):
        await remote.quote(HOME, ONE)  # too old


async def test_shipping_answering_is_always_asked_and_its_errors_relayed() -> None:
    shipping, clock = Shipping(), Clock()
    remote = _remote(shipping, clock)
    await remote.quote(HOME, ONE)
    await remote.quote(HOME, ONE)
    assert shipping.calls == 2  # memory is for outages only, never a cache in front of shipping
    shipping.code = grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(Relayed):
        await remote.quote(HOME, ONE)  # bad input is not an outage: relayed as shipping said it


def test_the_oldest_quotes_make_room() -> None:
    quotes = RecentQuotes(max_age=60, size=2, clock=Clock())
    requests = [shipping_pb2.GetQuoteRequest(address=HOME, items=[common_pb2.LineItem(product_id="p", quantity=n)])
                for n in (1, 2, 3)]  # fmt: skip
    for n, request in enumerate(requests):
        quotes.remember(request, Money.of("USD", n))
    assert [quotes.recall(r) for r in requests] == [None, Money.of("USD", 1), Money.of("USD", 2)]
    assert RecentQuotes(max_age=0).recall(requests[0]) is None
