"""The gateway as HTTP clients meet it: JSON calls and Server-Sent Events read
as they arrive, every wait bounded."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

# Luhn-valid and used by no other test: a log line holding it came from here.
CARD_NUMBER = "4532015112830366"
ADDRESS = {"street_address": "1 Main St", "city": "Springfield", "state": "IL", "country": "US", "zip_code": "62701"}
BOOTS = "sku-1010"  # 179 USD: 56 of them are over the review threshold (10,000 USD)
PENS = "sku-1009"  # 58 USD: 173 of them are too


def order_body(user_id: str, *lines: tuple[str, int], card_number: str = CARD_NUMBER) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "items": [{"product_id": product, "quantity": quantity} for product, quantity in lines],
        "address": ADDRESS,
        "email": f"{user_id}@example.com",
        "credit_card": {"number": card_number, "cvv": 123, "expiration_year": 2039, "expiration_month": 12},
    }


def new_user() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


@dataclass
class Message:
    event: str
    id: str
    data: Any


class EventStream:
    """An open SSE response, read message by message (comments skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, within: float = 20.0) -> Message | None:
        """The next message, or None when the server ended the stream."""
        return await asyncio.wait_for(self._read(), within)

    async def _read(self) -> Message | None:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if not line:
                if fields:
                    return Message(fields.get("event", "message"), fields.get("id", ""), json.loads(fields["data"]))
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        return None

    async def until(self, done: Any, within: float = 30.0) -> list[Message]:
        """Messages up to the first one ``done`` accepts (inclusive)."""
        found: list[Message] = []

        async def read() -> list[Message]:
            while True:
                message = await self._read()
                assert message is not None, f"the stream ended after {found}"
                found.append(message)
                if done(message):
                    return found

        return await asyncio.wait_for(read(), within)


@asynccontextmanager
async def events(client: httpx.AsyncClient, path: str, last_event_id: str = "") -> AsyncIterator[EventStream]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with client.stream("GET", path, headers=headers, timeout=httpx.Timeout(10, read=60)) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)


async def stored_order(client: httpx.AsyncClient, order_id: str, within: float = 20.0) -> dict[str, Any]:
    """GET /api/orders/{id} once the order context has stored it (404 until then)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        answer = await client.get(f"/api/orders/{order_id}")
        if answer.status_code == 200:
            found: dict[str, Any] = answer.json()
            return found
        assert answer.status_code == 404, answer.text
        assert asyncio.get_running_loop().time() < deadline, f"order {order_id} never stored"
        await asyncio.sleep(0.1)
