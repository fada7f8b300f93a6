"""The fastest chaos scenarios (`make chaos` runs them all, docs/chaos.md): a
steady load from a separate process, one fault, recovery, a quiet mesh, then
the global auditor clean.

Each scenario starts a mesh of its own; the load runs 12 s at 20 orders/s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.run import run
from chaos.scenarios import SCENARIOS

FASTEST = ["order-killed-twice", "rolling-sigterm", "redis-killed", "poison", "connections-dropped"]


@pytest.mark.parametrize("name", FASTEST)
async def test_no_promise_breaks_under_the_fault(name: str, tmp_path: Path) -> None:
    row = await run(SCENARIOS[name], tmp_path, rate=20, seconds=12)
    assert row.clean, row.report
    assert row.attempted >= 200 and row.answered == row.attempted, row.codes  # every call answered, none given up on
    books = row.books
    assert (books.lost, books.duplicated, books.owed, row.oversold, row.money_kept) == (0, 0, {}, 0, 0)
    assert books.persisted == row.answered + 1  # and the recovery probe's order
