"""PlaceOrder claims by request_id (checkout/idempotency.py) on a fake Redis.

A hand-written fake rather than fakeredis[lua]: Claims uses GET and SET with
NX/XX/EX/KEEPTTL only, no scripts (see tests/unit/fake_redis.py).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from checkout.idempotency import Claims, fingerprint
from mesh.errors import AlreadyExists, Unavailable
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.common.v1 import common_pb2
from tests.support import eventually
from tests.unit.fake_redis import FakeRedis

KEY = "checkout:request:r-1"
TTL = 3600
TAKEOVER = 30.0


def claims_on(fake: FakeRedis, *, wait_seconds: float = 5.0) -> Claims:
    return Claims(fake.client(), ttl_seconds=TTL, wait_seconds=wait_seconds, takeover_after=TAKEOVER)


def stored(fake: FakeRedis) -> dict[str, object]:
    record: dict[str, object] = json.loads(fake.values[KEY])
    return record


async def test_the_first_claim_keeps_the_new_order_id() -> None:
    fake = FakeRedis()
    claim = await claims_on(fake).claim("r-1", "o0-new", "fp")
    assert (claim.order_id, claim.answer) == ("o0-new", None)
    assert stored(fake)["order_id"] == "o0-new" and stored(fake)["fingerprint"] == "fp"
    assert fake.ttls[KEY] == TTL, "a claim must expire, or a dead request id is kept for ever"


async def test_a_stored_answer_is_returned_with_the_first_order_id() -> None:
    fake = FakeRedis()
    claims = claims_on(fake)
    first = await claims.claim("r-1", "o0-first", "fp")
    await claims.answer("r-1", first.order_id, b"\x01answer", "fp")
    again = await claims.claim("r-1", "o0-second", "fp")
    assert (again.order_id, again.answer) == ("o0-first", b"\x01answer")
    assert fake.ttls[KEY] == TTL


async def test_a_concurrent_duplicate_waits_for_the_answer() -> None:
    fake = FakeRedis()
    claims = claims_on(fake)
    await claims.claim("r-1", "o0-first", "fp")
    duplicate = asyncio.create_task(claims.claim("r-1", "o0-dup", "fp"))
    # It has read the claim (no answer yet) at least once and is still waiting.
    await eventually(lambda: fake.gets.get(KEY, 0) >= 1, within=5, what="the duplicate to read the claim", every=0.001)
    assert not duplicate.done()
    await claims.answer("r-1", "o0-first", b"done", "fp")
    claim = await asyncio.wait_for(duplicate, timeout=5)
    assert (claim.order_id, claim.answer) == ("o0-first", b"done")


async def test_a_duplicate_that_waits_too_long_is_unavailable() -> None:
    fake = FakeRedis()
    claims = claims_on(fake, wait_seconds=0.05)
    await claims.claim("r-1", "o0-first", "fp")
    with pytest.raises(Unavailable, match="r-1 is still being processed"):
        await claims.claim("r-1", "o0-dup", "fp")
    assert stored(fake)["order_id"] == "o0-first", "the waiting duplicate did not take the claim"


@pytest.mark.parametrize("answered", [False, True], ids=["in-flight", "answered"])
async def test_a_request_id_reused_for_another_order_is_already_exists(answered: bool) -> None:
    fake = FakeRedis()
    claims = claims_on(fake)
    await claims.claim("r-1", "o0-first", "fp-a")
    if answered:
        await claims.answer("r-1", "o0-first", b"done", "fp-a")
    with pytest.raises(AlreadyExists) as caught:
        await claims.claim("r-1", "o0-other", "fp-b")
    assert caught.value.violation.field == "request_id"
    assert "r-1 was used for a different order" in caught.value.message
    assert stored(fake)["order_id"] == "o0-first"


async def test_a_claim_older_than_the_takeover_time_is_taken_over_with_its_order_id() -> None:
    fake = FakeRedis()
    # The owner claimed it long ago and died without answering.
    dead_since = time.time() - TAKEOVER - 1
    fake.values[KEY] = json.dumps({"order_id": "o0-dead", "since": dead_since, "fingerprint": "fp"}).encode()
    fake.ttls[KEY] = TTL
    claim = await claims_on(fake).claim("r-1", "o0-new", "fp")
    assert (claim.order_id, claim.answer) == ("o0-dead", None), "the same order id: every step is idempotent by it"
    since = stored(fake)["since"]
    assert isinstance(since, float) and since > dead_since, "the new owner's claim is fresh again"
    assert fake.ttls[KEY] == TTL, "KEEPTTL: a takeover does not extend the claim"


async def test_a_fresh_claim_is_not_taken_over() -> None:
    fake = FakeRedis()
    fake.values[KEY] = json.dumps({"order_id": "o0-alive", "since": time.time(), "fingerprint": "fp"}).encode()
    with pytest.raises(Unavailable):
        await claims_on(fake, wait_seconds=0.05).claim("r-1", "o0-new", "fp")


async def test_an_abandoned_attempt_is_taken_over_at_once() -> None:
    fake = FakeRedis()
    claims = claims_on(fake)
    await claims.claim("r-1", "o0-first", "fp")
    await claims.abandon("r-1")
    retry = await claims_on(fake, wait_seconds=0.05).claim("r-1", "o0-retry", "fp")
    assert (retry.order_id, retry.answer) == ("o0-first", None)


async def test_abandon_never_erases_a_stored_answer() -> None:
    fake = FakeRedis()
    claims = claims_on(fake)
    await claims.claim("r-1", "o0-first", "fp")
    await claims.answer("r-1", "o0-first", b"done", "fp")
    await claims.abandon("r-1")
    assert (await claims.claim("r-1", "o0-x", "fp")).answer == b"done"


async def test_an_expired_claim_is_claimed_afresh() -> None:
    fake = FakeRedis()
    claims = claims_on(fake)
    await claims.claim("r-1", "o0-first", "fp")
    fake.expire_now(KEY)
    assert (await claims.claim("r-1", "o0-second", "fp")).order_id == "o0-second"


def order(
    *lines: tuple[str, int], card: str = "4432 8015 6152 0454", city: str = "Springfield"
) -> checkout_pb2.PlaceOrderRequest:
    return checkout_pb2.PlaceOrderRequest(
        request_id="r-1",
        user_id="ada",
        items=[common_pb2.LineItem(product_id=p, quantity=q) for p, q in lines],
        address=common_pb2.Address(city=city, country="US", zip_code="62701"),
        credit_card=common_pb2.CreditCard(number=card),
    )


def test_fingerprint_is_the_order_not_its_spelling() -> None:
    same = fingerprint(order(("a", 2), ("b", 1)))
    assert fingerprint(order(("b", 1), ("a", 1), ("a", 1))) == same, "line order and split lines do not matter"
    assert fingerprint(order(("a", 2), ("b", 1), card="4432-8015-6152-0454")) == same
    assert fingerprint(order(("a", 3), ("b", 1))) != same
    assert fingerprint(order(("a", 2), ("b", 1), city="Shelbyville")) != same
    assert fingerprint(order(("a", 2), ("b", 1), card="4000000000000002")) != same
    # Only the last four digits count: another card ending the same way is the same order.
    assert fingerprint(order(("a", 2), ("b", 1), card="5500000000000454")) == same
