"""XINFO said a group had pending entries, and by XPENDING it had acknowledged
them (XPENDING's "min" is then None): trimming and lag carry on instead of
failing on int('None') (found by the chaos run "connections-dropped", where the
order context's consumers logged that error and backed off)."""

from __future__ import annotations

from typing import Any

from mesh.bus.redis_streams import oldest_unacknowledged_ms, trim_acknowledged


class RacingRedis:
    """Just the calls these two make: one group, pending 1 by XINFO, 0 by XPENDING."""

    def __init__(self) -> None:
        self.trimmed: list[str] = []

    async def xinfo_groups(self, stream: str) -> list[dict[str, Any]]:
        return [{"name": b"order", "pending": 1, "last-delivered-id": b"1700000000000-4"}]

    async def xpending(self, stream: str, group: Any) -> dict[str, Any]:
        return {"pending": 0, "min": None, "max": None, "consumers": []}

    async def xtrim(self, stream: str, *, minid: str, approximate: bool) -> None:
        self.trimmed.append(minid)

    async def xrange(self, stream: str, *, min: str, count: int) -> list[Any]:
        return [(b"1700000000001-0", {})]


async def test_trim_counts_a_group_that_acknowledged_meanwhile_as_caught_up() -> None:
    client = RacingRedis()
    await trim_acknowledged(client, "events")  # type: ignore[arg-type]
    assert client.trimmed == ["1700000000000-5"]


async def test_lag_reads_the_first_unread_entry_then() -> None:
    assert await oldest_unacknowledged_ms(RacingRedis(), "events", "order") == 1700000000001  # type: ignore[arg-type]
