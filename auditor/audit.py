"""Audit the whole mesh: read every context, check every invariant, look again
while something is off (a quiet mesh still finishes what was in flight: a
refill, a relay, a consumer's last batch), and report what stays wrong."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from auditor.checks import Check, check
from auditor.snapshot import Sources, read


async def audit(
    sources: Sources,
    *,
    window: timedelta,
    acknowledged: Iterable[str] | None = None,
    settle_seconds: float = 2.0,
    pause_seconds: float = 0.5,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Check]:
    """The checks of the last look: the first clean one, or the one taken when
    ``settle_seconds`` ran out."""
    wanted = list(acknowledged) if acknowledged is not None else None
    deadline = time.monotonic() + settle_seconds
    while True:
        checks = check(await read(sources), now=clock(), window=window, acknowledged=wanted)
        if all(c.ok for c in checks) or time.monotonic() >= deadline:
            return checks
        await asyncio.sleep(pause_seconds)


def render(checks: list[Check], *, examples: int = 10) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'invariant':<{width}} {'checked':>8} {'violations':>10}  verdict"]
    for c in checks:
        lines.append(f"{c.name:<{width}} {c.checked:>8} {len(c.violations):>10}  {'ok' if c.ok else 'VIOLATED'}")
    for c in checks:
        if c.violations:
            lines += ["", f"{c.name}:"]
            lines += [f"  {v}" for v in c.violations[:examples]]
            if len(c.violations) > examples:
                lines.append(f"  ... and {len(c.violations) - examples} more")
    bad = sum(not c.ok for c in checks)
    lines += ["", "clean" if not bad else f"NOT CLEAN: {bad} of {len(checks)} invariants violated"]
    return "\n".join(lines)


def clean(checks: list[Check]) -> bool:
    return all(c.ok for c in checks)
