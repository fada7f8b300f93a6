"""Request validation shared by every context: collect every violation, then raise.

check = Checker()
check.order_id(request.order_id, "order_id")
check.raise_if_any()
"""

from __future__ import annotations

import re

from mesh.errors import FieldViolation, InvalidArgument
from mesh.money import NANOS_PER_UNIT
from ordermesh.common.v1 import common_pb2

ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")


class Checker:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def require(self, condition: bool, field: str, description: str) -> bool:
        if not condition:
            self.fail(field, description)
        return condition

    def order_id(self, value: str, field: str = "order_id") -> None:
        if not value:
            self.fail(field, "is required")
        elif not ORDER_ID.match(value):
            self.fail(field, "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")

    def identifier(self, value: str, field: str, max_length: int = 128) -> None:
        if not value:
            self.fail(field, "is required")
        elif len(value) > max_length:
            self.fail(field, f"must be at most {max_length} characters")

    def money(self, value: common_pb2.Money, field: str, *, positive: bool = True) -> None:
        if not CURRENCY.match(value.currency_code):
            self.fail(f"{field}.currency_code", "must be a 3-letter ISO 4217 code such as USD")
        if value.units < 0 or value.nanos < 0:
            self.fail(f"{field}.units", "must not be negative")
        elif value.nanos >= NANOS_PER_UNIT:
            self.fail(f"{field}.nanos", "must be below 1,000,000,000")
        elif positive and value.units == 0 and value.nanos == 0:
            self.fail(f"{field}.units", "must be greater than zero")

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)
