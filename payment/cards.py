"""Card checks and the simulated processor's decision. Pure functions."""

from __future__ import annotations

from datetime import date

from mesh.validation import Checker
from ordermesh.common.v1 import common_pb2

# Test cards: a number ending in 0002 is declined; every other valid card captures.
DECLINED_SUFFIX = "0002"
DECLINE_REASON = "card declined"


def luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def check_card(check: Checker, card: common_pb2.CreditCard, today: date, field: str = "credit_card") -> None:
    number = card.number.replace(" ", "").replace("-", "")
    if not number:
        check.fail(f"{field}.number", "is required")
    elif not number.isdigit() or not 12 <= len(number) <= 19:
        check.fail(f"{field}.number", "must be 12-19 digits")
    elif not luhn_ok(number):
        check.fail(f"{field}.number", "fails the Luhn check")
    check.require(100 <= card.cvv <= 9999, f"{field}.cvv", "must be 3 or 4 digits")
    if check.require(1 <= card.expiration_month <= 12, f"{field}.expiration_month", "must be 1-12"):
        expired = (card.expiration_year, card.expiration_month) < (today.year, today.month)
        check.require(not expired, f"{field}.expiration_year", "card has expired")


def last4(number: str) -> str:
    return number.replace(" ", "").replace("-", "")[-4:]


def decline_reason(number: str) -> str:
    """The processor's answer: empty when captured, else why it was declined."""
    return DECLINE_REASON if last4(number) == DECLINED_SUFFIX else ""
