from __future__ import annotations

import pytest

from common.checks import Checks
from mesh.errors import InvalidArgument
from mesh.money import Money
from ordermesh.common.v1 import common_pb2


def test_money_is_exact_and_round_trips() -> None:
    price = Money.of("USD", 0, 100_000_000)
    assert price.times(3) == Money.of("USD", 0, 300_000_000)  # no 0.30000000000000004
    total = Money.of("USD", 67, 990_000_000) + Money.of("USD", 5, 990_000_000)
    assert Money.from_proto(total.to_proto()) == total
    assert (total.to_proto().units, total.to_proto().nanos) == (73, 980_000_000)


def test_money_refuses_mixed_currencies() -> None:
    with pytest.raises(ValueError, match="currency mismatch"):
        Money.of("USD", 1) + Money.of("EUR", 1)


@pytest.mark.parametrize(
    ("money", "field"),
    [
        (common_pb2.Money(currency_code="usd", units=1), "amount.currency_code"),
        (common_pb2.Money(currency_code="USD", units=-1), "amount.units"),
        (common_pb2.Money(currency_code="USD", units=0), "amount.units"),
        (common_pb2.Money(currency_code="USD", units=1, nanos=1_000_000_000), "amount.nanos"),
    ],
)
def test_bad_money_names_the_field(money: common_pb2.Money, field: str) -> None:
    check = Checks()
    check.money(money, "amount")
    with pytest.raises(InvalidArgument) as caught:
        check.raise_if_any()
    assert [v.field for v in caught.value.violations] == [field]


@pytest.mark.parametrize("order_id", ["", "a" * 65, "has space", "semi;colon"])
def test_bad_order_ids(order_id: str) -> None:
    check = Checks()
    check.order_id(order_id)
    assert [v.field for v in check.violations] == ["order_id"]


def test_good_order_id() -> None:
    check = Checks()
    check.order_id("o-1_A" + "x" * 59)
    check.raise_if_any()


@pytest.mark.parametrize(
    ("address", "field"),
    [
        (common_pb2.Address(city="c" * 101), "address.city"),
        (common_pb2.Address(zip_code="1" * 17), "address.zip_code"),
        (common_pb2.Address(street_address="Straße 1\n"), "address.street_address"),
        (common_pb2.Address(state="Île-de-France\x85"), "address.state"),
    ],
)
def test_address_fits_the_order_database(address: common_pb2.Address, field: str) -> None:
    check = Checks()
    check.address(address)
    assert [v.field for v in check.violations] == [field]


def test_an_address_in_any_script_is_accepted() -> None:
    check = Checks()
    check.address(common_pb2.Address(street_address="Straße 1", city="Kraków", state="Île-de-France"))
    check.address(common_pb2.Address(street_address="東京都千代田区千代田1-1", city="Москва", state="ગુજરાત"))
    check.raise_if_any()
