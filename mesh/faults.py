"""Fault injection for the simulated dependencies (payment, shipping), so tests
and demos can exercise breakers, deadlines and reconciliation."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FaultInjection:
    # Spent after the effect is stored, like a dependency that answers late.
    latency_seconds: float = 0.0
    # Share of calls refused before anything is stored.
    failure_rate: float = 0.0
    rng: Callable[[], float] = field(default=random.random, compare=False)

    def should_fail(self) -> bool:
        return bool(self.failure_rate) and self.rng() < self.failure_rate

    async def delay(self) -> None:
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
