"""A lease in Redis so that one replica runs a periodic job at a time.

SET NX PX takes it; renewal and release check the owner in a script, so a
replica whose lease expired (a long GC pause, a partition) cannot extend or
drop somebody else's.
"""

from __future__ import annotations

import os
import socket
import uuid

import redis.asyncio as redis

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, client: redis.Redis, name: str, ttl_ms: int) -> None:
        self._client = client
        self.key = f"lease:{name}"
        self._ttl_ms = ttl_ms
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self.held = False

    @property
    def ttl_ms(self) -> int:
        return self._ttl_ms

    async def acquire(self) -> bool:
        """Take the lease, or keep it if already ours; False if another replica holds it."""
        if self.held and await self._renew(keys=[self.key], args=[self.owner, self._ttl_ms]):
            return True
        self.held = bool(await self._client.set(self.key, self.owner, nx=True, px=self._ttl_ms))
        return self.held

    async def release(self) -> None:
        if self.held:
            await self._release(keys=[self.key], args=[self.owner])
            self.held = False
