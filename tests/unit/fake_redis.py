"""A hand-written stand-in for the few Redis commands checkout's idempotency uses.

checkout.idempotency.Claims needs only GET and SET with NX, XX, EX and KEEPTTL
(no Lua, no streams), sent as raw commands, so a dict with Redis's rules for those options is smaller
and clearer than fakeredis, and adds no dependency. It counts GETs per key so a
test can see a duplicate request polling for the first attempt's answer.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as redis


class FakeRedis:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.ttls: dict[str, int | None] = {}
        self.gets: dict[str, int] = {}

    async def get(self, key: str) -> bytes | None:
        self.gets[key] = self.gets.get(key, 0) + 1
        return self.values.get(key)

    async def set(
        self,
        key: str,
        value: str | bytes,
        *,
        nx: bool = False,
        xx: bool = False,
        ex: int | None = None,
        keepttl: bool = False,
    ) -> bool | None:
        # Redis answers nil (None in redis-py) when NX or XX stops the write.
        exists = key in self.values
        if (nx and exists) or (xx and not exists):
            return None
        self.values[key] = value.encode() if isinstance(value, str) else value
        if not keepttl:
            self.ttls[key] = ex
        return True

    async def execute_command(self, *args: str | bytes | int) -> bytes | bool | None:
        """Claims sends raw commands (the same ones go on the pipelined connection)."""
        name, key, *rest = args
        if name == "GET" and not rest:
            return await self.get(str(key))
        if name != "SET":
            raise NotImplementedError(f"{name!r} is not faked")
        value, options = rest[0], [str(o) for o in rest[1:]]
        ex = int(options[options.index("EX") + 1]) if "EX" in options else None
        assert isinstance(value, str | bytes)
        return await self.set(
            str(key), value, nx="NX" in options, xx="XX" in options, ex=ex, keepttl="KEEPTTL" in options
        )

    def expire_now(self, key: str) -> None:
        """The key's TTL ran out."""
        self.values.pop(key, None)
        self.ttls.pop(key, None)

    def client(self) -> redis.Redis:
        # Claims is typed for the real client; this fake has the part it calls.
        return cast("redis.Redis", self)
