"""The refiller's view of how fast each product sells (a sliding window)."""

from __future__ import annotations

from catalog.quota import SalesRate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_units_over_the_window_and_old_sales_drop_out() -> None:
    clock = Clock()
    rate = SalesRate(window_seconds=5, clock=clock)
    for _ in range(10):
        rate.record("hot", 3)
    clock.now += 1
    rate.record("hot", 20)
    rate.record("slow", 1)
    assert rate.rate("hot") == 50 / 5
    assert sorted(rate.selling()) == ["hot", "slow"]
    clock.now += 4.2  # the first second's sales leave the window
    assert rate.rate("hot") == 20 / 5
    clock.now += 1
    assert rate.rate("hot") == 0
    assert rate.selling() == [], "products with no sales in the window are forgotten"
