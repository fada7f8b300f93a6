"""The simulated processor's decision. Pure functions."""

from __future__ import annotations

# Test cards: a number ending in 0002 is declined; every other valid card captures.
DECLINED_SUFFIX = "0002"
DECLINE_REASON = "card declined"


def last4(number: str) -> str:
    return number.replace(" ", "").replace("-", "")[-4:]


def decline_reason(number: str) -> str:
    """The processor's answer: empty when captured, else why it was declined."""
    return DECLINE_REASON if last4(number) == DECLINED_SUFFIX else ""
