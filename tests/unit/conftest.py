"""The unit suite runs in-process: any child process fails the run (see no_children.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.unit.no_children import Guard, children


@pytest.fixture(scope="package", autouse=True)
def child_guard() -> Iterator[Guard]:
    """Refuses spawns during every unit test; at the end of the package, fails the run if
    one was attempted or a child of this process appeared. Package scope: the integration
    and e2e suites, which start servers on purpose, run outside it in the same session."""
    before = children(os.getpid())
    guard = Guard()
    with pytest.MonkeyPatch.context() as patch:
        guard.install(patch)
        yield guard
    appeared = children(os.getpid()) - before
    if guard.attempts or appeared:
        pytest.fail(
            "the unit tests must start no process; "
            f"attempted: {guard.attempts or 'none'}; children that appeared: {sorted(appeared) or 'none'}",
            pytrace=False,
        )
