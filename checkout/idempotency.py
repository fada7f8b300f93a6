"""PlaceOrder idempotency by request_id, in Redis.

The first attempt claims the request id (SET NX) and mints the order id into
the claim, so every later attempt for the same request uses the same order id
and every step of the saga (ReserveStock, Charge) is idempotent by it. A
duplicate that arrives while the first attempt runs waits for its answer; a
claim whose owner died is taken over and the saga re-runs with the same order
id, changing nothing that was already done.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import redis.asyncio as redis

from mesh.errors import Unavailable


@dataclass(frozen=True)
class Claim:
    order_id: str
    answer: bytes | None  # the stored response of a finished attempt


class Requests:
    def __init__(self, client: redis.Redis, *, ttl_seconds: int, wait_seconds: float, takeover_after: float) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._wait = wait_seconds
        self._takeover = takeover_after

    def _key(self, request_id: str) -> str:
        return f"checkout:request:{request_id}"

    async def claim(self, request_id: str, new_order_id: str) -> Claim:
        """The order id for this request, and its answer if one is stored."""
        key = self._key(request_id)
        record = json.dumps({"order_id": new_order_id, "since": time.time()})
        if await self._client.set(key, record, nx=True, ex=self._ttl):
            return Claim(new_order_id, None)
        deadline = time.monotonic() + self._wait
        while True:
            raw = await self._client.get(key)
            if raw is None:  # expired or released meanwhile: claim afresh
                if await self._client.set(key, record, nx=True, ex=self._ttl):
                    return Claim(new_order_id, None)
                continue
            stored = json.loads(raw)
            if "answer" in stored:
                return Claim(stored["order_id"], bytes.fromhex(stored["answer"]))
            if time.time() - stored["since"] > self._takeover:
                stored["since"] = time.time()
                await self._client.set(key, json.dumps(stored), xx=True, keepttl=True)
                return Claim(stored["order_id"], None)
            if time.monotonic() > deadline:
                raise Unavailable(f"request {request_id} is still being processed; retry")
            await asyncio.sleep(0.05)

    async def answer(self, request_id: str, order_id: str, response: bytes) -> None:
        record = json.dumps({"order_id": order_id, "answer": response.hex()})
        await self._client.set(self._key(request_id), record, ex=self._ttl)

    async def abandon(self, request_id: str) -> None:
        """This attempt failed without an answer: let the next one take over at
        once, with the same order id (every step is idempotent by it)."""
        raw = await self._client.get(self._key(request_id))
        if raw is not None:
            stored = json.loads(raw)
            if "answer" not in stored:
                stored["since"] = 0
                await self._client.set(self._key(request_id), json.dumps(stored), xx=True, keepttl=True)
