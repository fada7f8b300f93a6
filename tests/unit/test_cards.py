from __future__ import annotations

from datetime import date

import pytest

from common.checks import Checks, luhn_ok
from ordermesh.common.v1 import common_pb2
from payment.cards import decline_reason, last4

TODAY = date(2026, 11, 21)


@pytest.mark.parametrize(
    ("number", "ok"), [("4432801561520454", True), ("4000000000000002", True), ("4432801561520455", False)]
)
def test_luhn(number: str, ok: bool) -> None:
    assert luhn_ok(number) is ok


def violations(card: common_pb2.CreditCard) -> list[str]:
    check = Checks()
    check.card(card, TODAY)
    return [v.field for v in check.violations]


def test_valid_card_passes() -> None:
    assert (
        violations(
            common_pb2.CreditCard(number="4432-8015-6152-0454", cvv=672, expiration_year=2026, expiration_month=11)
        )
        == []
    )


def test_every_bad_part_is_named() -> None:
    card = common_pb2.CreditCard(number="12ab", cvv=7, expiration_year=2026, expiration_month=13)
    assert violations(card) == ["credit_card.number", "credit_card.cvv", "credit_card.expiration_month"]


def test_expired_card() -> None:
    card = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2026, expiration_month=10)
    assert violations(card) == ["credit_card.expiration_year"]


def test_test_cards_decide_deterministically() -> None:
    assert decline_reason("4000000000000002") == "card declined"
    assert decline_reason("4432801561520454") == ""
    assert last4("4432 8015 6152 0454") == "0454"
