"""PlaceOrder idempotency by request_id, in Redis.

The first attempt claims the request id (SET NX) and mints the order id into
the claim, so every later attempt for the same request uses the same order id
and every step of the saga (ReserveStock, Charge) is idempotent by it. A
duplicate that arrives while the first attempt runs waits for its answer; a
claim whose owner died is taken over and the saga re-runs with the same order
id, changing nothing that was already done.

The claim keeps a fingerprint of the request (user, items, address, card's last
four). A request id reused for a different request is refused (ALREADY_EXISTS):
its order id is taken, and reusing it would reserve or charge another order
under it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis

from mesh.errors import AlreadyExists, Unavailable
from mesh.redis_pipe import RedisPipe
from ordermesh.checkout.v1 import checkout_pb2


@dataclass(frozen=True)
class Claim:
    order_id: str
    answer: bytes | None  # the stored response of a finished attempt


class Claims:
    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_seconds: int,
        wait_seconds: float,
        takeover_after: float,
        pipe: RedisPipe | None = None,
    ) -> None:
        # Raw commands: on the process's pipelined connection when it has one
        # (every PlaceOrder makes two of them), else through redis-py's pool.
        self._command: Callable[..., Awaitable[Any]] = pipe.call if pipe is not None else client.execute_command
        self._ttl = ttl_seconds
        self._wait = wait_seconds
        self._takeover = takeover_after

    def _key(self, request_id: str) -> str:
        return f"checkout:request:{request_id}"

    async def claim(self, request_id: str, new_order_id: str, fingerprint: str) -> Claim:
        """The order id for this request, and its answer if one is stored."""
        key = self._key(request_id)
        record = json.dumps({"order_id": new_order_id, "since": time.time(), "fingerprint": fingerprint})
        if await self._command("SET", key, record, "NX", "EX", self._ttl):
            return Claim(new_order_id, None)
        deadline = time.monotonic() + self._wait
        while True:
            raw = await self._command("GET", key)
            if raw is None:  # expired or released meanwhile: claim afresh
                if await self._command("SET", key, record, "NX", "EX", self._ttl):
                    return Claim(new_order_id, None)
                continue
            stored = json.loads(raw)
            if stored.get("fingerprint", fingerprint) != fingerprint:
                raise AlreadyExists("request_id", f"{request_id} was used for a different order; use a new request_id")
            if "answer" in stored:
                return Claim(stored["order_id"], bytes.fromhex(stored["answer"]))
            if time.time() - stored["since"] > self._takeover:
                stored["since"] = time.time()
                await self._command("SET", key, json.dumps(stored), "XX", "KEEPTTL")
                return Claim(stored["order_id"], None)
            if time.monotonic() > deadline:
                raise Unavailable(f"request {request_id} is still being processed; retry")
            await asyncio.sleep(0.05)

    async def answer(self, request_id: str, order_id: str, response: bytes, fingerprint: str) -> None:
        record = json.dumps({"order_id": order_id, "answer": response.hex(), "fingerprint": fingerprint})
        await self._command("SET", self._key(request_id), record, "EX", self._ttl)

    async def abandon(self, request_id: str) -> None:
        """This attempt failed without an answer: let the next one take over at
        once, with the same order id (every step is idempotent by it)."""
        raw = await self._command("GET", self._key(request_id))
        if raw is not None:
            stored = json.loads(raw)
            if "answer" not in stored:
                stored["since"] = 0
                await self._command("SET", self._key(request_id), json.dumps(stored), "XX", "KEEPTTL")


def fingerprint(request: checkout_pb2.PlaceOrderRequest) -> str:
    """What makes two PlaceOrder requests the same order: the user, the items
    (lines of one product summed, in any order), the address and the card's
    last four digits. The full card number is never stored."""
    items: dict[str, int] = {}
    for item in request.items:
        items[item.product_id] = items.get(item.product_id, 0) + item.quantity
    address = request.address
    canonical = {
        "user": request.user_id,
        "items": sorted(items.items()),
        "address": [address.street_address, address.city, address.state, address.country, address.zip_code],
        "card": request.credit_card.number.replace(" ", "").replace("-", "")[-4:],
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
