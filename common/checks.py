"""The rules of the types the contexts share (``protos/ordermesh/common/v1``):
what a well-formed id, amount, address, list of lines and card are. Checkout
checks a whole order up front with them, and each context again at its own
door, so the same input gets the same answer everywhere.

    check = Checks()
    check.order_id(request.order_id)
    check.raise_if_any()
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from mesh.money import NANOS_PER_UNIT
from mesh.validation import Checker
from ordermesh.common.v1 import common_pb2

# What the API accepts as an order or product id (ids minted by checkout are
# narrower: ``common.order_ids.MINTED``).
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_LINES = 100
MAX_QUANTITY = 1000
CURRENCY = re.compile(r"^[A-Z]{3}$")
# What the order database stores of an address (order/models.py): an order that
# cannot be stored must be refused before any stock is taken for it.
ADDRESS_LIMITS = {"street_address": 200, "city": 100, "state": 100, "country": 100, "zip_code": 16}


class Checks(Checker):
    """A :class:`Checker` that also knows the shared types."""

    def order_id(self, value: str, field: str = "order_id") -> None:
        if not value:
            self.fail(field, "is required")
        elif not ID_PATTERN.match(value):
            self.fail(field, "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")

    def address(self, address: common_pb2.Address, field: str = "address") -> None:
        for name, limit in ADDRESS_LIMITS.items():
            self.text(getattr(address, name), f"{field}.{name}", limit)

    def money(self, value: common_pb2.Money, field: str, *, positive: bool = True) -> None:
        if not CURRENCY.match(value.currency_code):
            self.fail(f"{field}.currency_code", "must be a 3-letter ISO 4217 code such as USD")
        if value.units < 0 or value.nanos < 0:
            self.fail(f"{field}.units", "must not be negative")
        elif value.nanos >= NANOS_PER_UNIT:
            self.fail(f"{field}.nanos", "must be below 1,000,000,000")
        elif positive and value.units == 0 and value.nanos == 0:
            self.fail(f"{field}.units", "must be greater than zero")

    def line_items(
        self,
        items: Iterable[common_pb2.LineItem],
        field: str = "items",
        *,
        max_lines: int = MAX_LINES,
        max_quantity: int = MAX_QUANTITY,
    ) -> None:
        """1..max_lines lines, product ids well-formed, 1..max_quantity units per
        line and per product (lines of one product are summed)."""
        lines = list(items)
        if not lines:
            self.fail(field, "needs at least one line")
        elif len(lines) > max_lines:
            self.fail(field, f"has {len(lines)} lines; at most {max_lines} are allowed")
        for index, item in enumerate(lines[:max_lines]):
            if not ID_PATTERN.match(item.product_id):
                self.fail(f"{field}[{index}].product_id", "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
            if not 1 <= item.quantity <= max_quantity:
                self.fail(f"{field}[{index}].quantity", f"must be 1-{max_quantity}, got {item.quantity}")
        if all(1 <= i.quantity <= max_quantity for i in lines):
            totals: dict[str, int] = {}
            for item in lines:
                totals[item.product_id] = totals.get(item.product_id, 0) + item.quantity
            for pid, total in totals.items():
                if total > max_quantity:
                    self.fail(field, f"product {pid}: {total} units in all exceeds {max_quantity}")

    def card(self, card: common_pb2.CreditCard, today: date, field: str = "credit_card") -> None:
        number = card.number.replace(" ", "").replace("-", "")
        if not number:
            self.fail(f"{field}.number", "is required")
        elif not number.isdigit() or not 12 <= len(number) <= 19:
            self.fail(f"{field}.number", "must be 12-19 digits")
        elif not luhn_ok(number):
            self.fail(f"{field}.number", "fails the Luhn check")
        self.require(100 <= card.cvv <= 9999, f"{field}.cvv", "must be 3 or 4 digits")
        if self.require(1 <= card.expiration_month <= 12, f"{field}.expiration_month", "must be 1-12"):
            expired = (card.expiration_year, card.expiration_month) < (today.year, today.month)
            self.require(not expired, f"{field}.expiration_year", "card has expired")


def luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0
