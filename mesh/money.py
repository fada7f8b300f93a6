"""Money as an exact count of nanos (10^-9 units), like google.type.Money."""

from __future__ import annotations

from dataclasses import dataclass

from ordermesh.common.v1 import common_pb2

NANOS_PER_UNIT = 1_000_000_000


@dataclass(frozen=True, order=True)
class Money:
    currency: str
    nanos_total: int  # the amount in 10^-9 units; never a float

    @classmethod
    def of(cls, currency: str, units: int, nanos: int = 0) -> Money:
        return cls(currency, units * NANOS_PER_UNIT + nanos)

    @classmethod
    def from_proto(cls, message: common_pb2.Money) -> Money:
        return cls.of(message.currency_code, message.units, message.nanos)

    def to_proto(self) -> common_pb2.Money:
        units, nanos = divmod(abs(self.nanos_total), NANOS_PER_UNIT)
        sign = -1 if self.nanos_total < 0 else 1
        return common_pb2.Money(currency_code=self.currency, units=sign * units, nanos=sign * nanos)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.currency, self.nanos_total + other.nanos_total)

    def times(self, quantity: int) -> Money:
        return Money(self.currency, self.nanos_total * quantity)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __str__(self) -> str:
        return f"{self.nanos_total / NANOS_PER_UNIT:.2f} {self.currency}"
