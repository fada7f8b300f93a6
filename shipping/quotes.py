"""Shipping prices. Pure: the same address and items always cost the same."""

from __future__ import annotations

from collections.abc import Iterable

from common.checks import Checks
from mesh.money import Money
from ordermesh.common.v1 import common_pb2

BASE = Money.of("USD", 5, 990_000_000)  # first unit
PER_EXTRA_UNIT = Money.of("USD", 0, 500_000_000)
INTERNATIONAL = Money.of("USD", 10)
DOMESTIC = frozenset({"US", "USA", "UNITED STATES"})


def quote(country: str, quantities: Iterable[int]) -> Money:
    units = sum(quantities)
    cost = BASE + PER_EXTRA_UNIT.times(max(units - 1, 0))
    if country.strip().upper() not in DOMESTIC:
        cost = cost + INTERNATIONAL
    return cost


def check_address(check: Checks, address: common_pb2.Address, field: str = "address") -> None:
    check.require(bool(address.country.strip()), f"{field}.country", "is required")
    check.require(bool(address.zip_code.strip()), f"{field}.zip_code", "is required")
    check.require(len(address.zip_code) <= 16, f"{field}.zip_code", "must be at most 16 characters")
