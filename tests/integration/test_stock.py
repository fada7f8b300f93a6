"""The stock engine on real Redis and real SQL (SQLite and MariaDB)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from catalog.ledger import Level
from catalog.models import dead_letters, journal_applied
from mesh.bus import decode_envelope
from mesh.local.procs import RedisServer
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.common.v1 import common_pb2
from tests.integration.catalog_support import CatalogUnderTest, catalog_settings, running_catalog

TYPEWRITER, CAMERA = "sku-1001", "sku-1002"


@pytest.fixture
async def catalog(database_url: str, redis_server: RedisServer) -> AsyncIterator[CatalogUnderTest]:
    async with running_catalog(catalog_settings(database_url, redis_server.url)) as under_test:
        yield under_test


async def test_reserve_and_release_are_all_or_nothing_and_idempotent(catalog: CatalogUnderTest) -> None:
    await catalog.set_stock(TYPEWRITER, 10)
    await catalog.set_stock(CAMERA, 4)

    # Two lines of one product are summed into one.
    first = await catalog.reserve("o-1", (TYPEWRITER, 2), (TYPEWRITER, 3), (CAMERA, 1))
    assert not first.already_reserved
    assert [(i.product_id, i.quantity) for i in first.items] == [(TYPEWRITER, 5), (CAMERA, 1)]
    assert (first.total.units, first.total.nanos) == (5 * 67 + 4 + 129, 950_000_000)
    assert (await catalog.stock(TYPEWRITER), await catalog.stock(CAMERA)) == (5, 3)

    again = await catalog.reserve("o-1", (TYPEWRITER, 2), (TYPEWRITER, 3), (CAMERA, 1))
    assert again.already_reserved and not again.released
    assert (await catalog.stock(TYPEWRITER), await catalog.stock(CAMERA)) == (5, 3)

    # Summed lines are checked as one: 3 + 3 > 5 although each line fits.
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await catalog.reserve("o-2", (CAMERA, 1), (TYPEWRITER, 3), (TYPEWRITER, 3))
    assert short.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert short.value.details() == f"product {TYPEWRITER}: requested 6, available 5"
    status = rpc_status.from_call(short.value)  # type: ignore[arg-type]
    failure = error_details_pb2.PreconditionFailure()
    assert status.details[0].Unpack(failure)
    assert failure.violations[0].subject == f"products/{TYPEWRITER}"
    assert (await catalog.stock(TYPEWRITER), await catalog.stock(CAMERA)) == (5, 3), "nothing partially reserved"

    released = [await catalog.stub.ReleaseStock(catalog_pb2.ReleaseStockRequest(order_id="o-1")) for _ in range(2)]
    assert [r.released for r in released] == [True, False]
    unknown = await catalog.stub.ReleaseStock(catalog_pb2.ReleaseStockRequest(order_id="o-never"))
    assert unknown.released is False
    assert (await catalog.stock(TYPEWRITER), await catalog.stock(CAMERA)) == (10, 4)
    after_release = await catalog.reserve("o-1", (TYPEWRITER, 5), (CAMERA, 1))
    assert after_release.already_reserved and after_release.released, "a released order is not reserved anew"
    assert (await catalog.stock(TYPEWRITER), await catalog.stock(CAMERA)) == (10, 4)

    assert await catalog.placed_order_ids() == ["o-1"]
    await catalog.flusher.run_until_idle()
    assert await catalog.journal_length() == 0
    assert (await catalog.sql_stock(TYPEWRITER), await catalog.sql_stock(CAMERA)) == (10, 4)
    await catalog.assert_clean()


async def test_the_reservation_decides_review_from_its_total(catalog: CatalogUnderTest) -> None:
    """The catalog prices the order when it reserves, so it decides whether the
    order waits for review (checkout asks no price of its own): the answer and
    the OrderPlaced event both carry the status."""
    await catalog.set_stock(TYPEWRITER, 10)
    shipping = common_pb2.Money(currency_code="USD", units=5)
    threshold = common_pb2.Money(currency_code="USD", units=2 * 67 + 5, nanos=980_000_000)  # exactly 2 + shipping
    statuses = {}
    for order_id, quantity in (("o-small", 1), ("o-at", 2), ("o-big", 3)):
        reservation = await catalog.stub.ReserveStock(
            catalog_pb2.ReserveStockRequest(
                order_id=order_id,
                items=[common_pb2.LineItem(product_id=TYPEWRITER, quantity=quantity)],
                draft=common_pb2.OrderDraft(user_id="u1", shipping_cost=shipping, review_at=threshold),
            )
        )
        statuses[order_id] = reservation.initial_status
    assert statuses == {
        "o-small": common_pb2.PENDING,
        "o-at": common_pb2.AWAITING_REVIEW,
        "o-big": common_pb2.AWAITING_REVIEW,
    }
    events = [decode_envelope(f[b"event"]) for f in await catalog.stream(catalog.parts.keys.order_stream)]
    carried = {e.order_id: e.order_placed.draft.initial_status for e in events}
    assert carried == statuses

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await catalog.stub.ReserveStock(
            catalog_pb2.ReserveStockRequest(
                order_id="o-eur",
                items=[common_pb2.LineItem(product_id=TYPEWRITER, quantity=1)],
                draft=common_pb2.OrderDraft(user_id="u1", review_at=common_pb2.Money(currency_code="EUR", units=1)),
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "draft.review_at.currency_code:" in (caught.value.details() or "")
    assert await catalog.stock(TYPEWRITER) == 10 - 6


async def test_scripts_reload_after_script_flush(catalog: CatalogUnderTest) -> None:
    await catalog.set_stock(TYPEWRITER, 7)
    await catalog.reserve("o-before", (TYPEWRITER, 1))
    await catalog.redis.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    await catalog.reserve("o-reload", (TYPEWRITER, 2))
    assert await catalog.stock(TYPEWRITER) == 4
    await catalog.assert_clean()


async def test_counters_hold_only_what_sql_allocated(catalog: CatalogUnderTest) -> None:
    # At start-up every product got a first allocation (STOCK_MIN_REFILL, 20), the rest stays in SQL.
    assert await catalog.level(TYPEWRITER) == Level(stock=25, allocated=20, stranded=0)
    assert await catalog.counter(TYPEWRITER) == 20
    assert await catalog.stock(TYPEWRITER) == 25
    await catalog.reserve("o-1", (TYPEWRITER, 1))
    assert await catalog.counter(TYPEWRITER) == 19
    # Twenty units where Redis has 19: an inline refill moves the last 5 from SQL first.
    await catalog.reserve("o-2", (TYPEWRITER, 20))
    assert await catalog.level(TYPEWRITER) == Level(stock=25, allocated=25, stranded=0)
    assert await catalog.counter(TYPEWRITER) == 4
    assert await catalog.stock(TYPEWRITER) == 4
    # A counter raised behind SQL's back is a mismatch the auditor names.
    await catalog.flusher.run_until_idle()
    assert (await catalog.audit()).clean
    epoch = await catalog.parts.ledger.current_epoch() or ""
    await catalog.redis.incrby(catalog.parts.keys.stock(epoch, TYPEWRITER), 3)
    result = await catalog.audit()
    assert not result.clean and [r.product_id for r in result.rows if r.verdict == "MISMATCH"] == [TYPEWRITER]


async def test_set_stock_takes_back_from_redis_through_the_journal(catalog: CatalogUnderTest) -> None:
    await catalog.set_stock(CAMERA, 42)  # nothing allocated yet: SQL alone
    assert await catalog.journal_length() == 0
    assert await catalog.sql_stock(CAMERA) == 42
    await catalog.reserve("o-cam", (CAMERA, 1))
    allocated = (await catalog.level(CAMERA)).allocated
    assert allocated > 10
    await catalog.set_stock(CAMERA, 10)  # less than Redis holds: the rest is taken back, journaled
    entries = await catalog.journal()
    assert [(f[b"reason"], int(f[b"delta"])) for f in entries] == [(b"reserve", -1), (b"set", -(allocated - 1 - 10))]
    assert await catalog.stock(CAMERA) == 10
    assert await catalog.flusher.run_until_idle() == 2
    assert await catalog.level(CAMERA) == Level(stock=10, allocated=10, stranded=0)
    assert await catalog.count(journal_applied) == 2
    await catalog.set_stock(CAMERA, 15)  # more than Redis holds: the rest waits in SQL
    assert await catalog.level(CAMERA) == Level(stock=15, allocated=10, stranded=0)
    assert await catalog.stock(CAMERA) == 15
    await catalog.assert_clean()


def line(product_id: str, quantity: int) -> common_pb2.LineItem:
    return common_pb2.LineItem(product_id=product_id, quantity=quantity)


async def test_a_bad_reservation_names_the_field_and_deducts_nothing(catalog: CatalogUnderTest) -> None:
    # One case on real Redis and SQL: it passes the servicer's checks and is refused by the
    # engine. Every bad-input case runs in tests/unit/test_catalog_validation.py.
    request = catalog_pb2.ReserveStockRequest(
        order_id="o",
        items=[line(CAMERA, 1)],
        draft=common_pb2.OrderDraft(user_id="u1", shipping_cost=common_pb2.Money(currency_code="EUR", units=5)),
    )
    before = await catalog.stock(CAMERA)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await catalog.stub.ReserveStock(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "draft.shipping_cost.currency_code:" in (caught.value.details() or "")
    assert await catalog.stock(CAMERA) == before
    assert await catalog.journal_length() == 0
    assert await catalog.placed_order_ids() == []


async def test_unknown_product_is_not_found_and_deducts_nothing(catalog: CatalogUnderTest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await catalog.reserve("o-unknown", (CAMERA, 1), ("sku-nope", 1))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "sku-nope" in (caught.value.details() or "")
    assert await catalog.stock(CAMERA) == 40
    assert await catalog.journal_length() == 0
    with pytest.raises(grpc.aio.AioRpcError) as negative:
        await catalog.stub.SetStock(catalog_pb2.SetStockRequest(product_id=CAMERA, stock=-1))
    assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_hot_product_two_thousand_buyers_from_four_processes(
    database_url: str, redis_server: RedisServer
) -> None:
    # All 2,000 calls are in flight at once: lift the in-flight cap above that. Eight
    # Redis connections for them all: callers queue for the pool, and a busy pool
    # is never taken for a Redis outage (the path stays Redis, asserted below).
    settings = catalog_settings(database_url, redis_server.url, max_concurrent_rpcs=4000, redis_pool_size=8)
    async with running_catalog(settings) as catalog:
        await hot_product(catalog)


async def hot_product(catalog: CatalogUnderTest) -> None:
    await catalog.set_stock(TYPEWRITER, 100)
    port = str(catalog.server.port)
    clients = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.load_reserve", port, TYPEWRITER, "500", f"c{n}", stdout=asyncio.subprocess.PIPE
        )
        for n in range(4)
    ]
    outputs = [json.loads((await client.communicate())[0]) for client in clients]
    assert all(client.returncode == 0 for client in clients)
    assert all(set(o) == {"ok", "short"} for o in outputs), outputs
    assert sum(o["ok"] for o in outputs) == 100
    assert sum(o["short"] for o in outputs) == 1900
    assert all(set(o) == {"ok", "short"} for o in outputs), outputs
    assert await catalog.stock(TYPEWRITER) == 0
    # The journal shows every intermediate counter value: it never went below zero.
    afters = [int(f[b"after"]) for f in await catalog.journal() if f[b"reason"] == b"reserve"]
    assert len(afters) == 100 and min(afters) == 0
    assert len(set(await catalog.placed_order_ids())) == 100
    # Every sale on Redis (refilled as it went): load alone never leaves it.
    assert catalog.metric("ordermesh_stock_reservations_total", {"path": "redis"}) == 100
    assert catalog.metric("ordermesh_stock_reservations_total", {"path": "sql"}) == 0
    assert catalog.metric("ordermesh_stock_path") == 0
    await catalog.flusher.run_until_idle()
    assert await catalog.level(TYPEWRITER) == Level(stock=0, allocated=0, stranded=0)
    await catalog.assert_clean()


async def test_malformed_journal_entry_is_dead_lettered_and_the_rest_flows(catalog: CatalogUnderTest) -> None:
    await catalog.reserve("o-before", (CAMERA, 1))
    await catalog.redis.xadd(catalog.parts.keys.journal, {"product_id": CAMERA, "delta": "lots"})
    await catalog.reserve("o-after", (CAMERA, 2))
    assert await catalog.flusher.run_until_idle() == 3
    assert await catalog.journal_length() == 0
    dead = await catalog.stream(catalog.parts.keys.dead_letters)
    assert len(dead) == 1 and dead[0][b"delta"] == b"lots" and b"dead_reason" in dead[0]
    assert await catalog.count(dead_letters) == 1
    assert await catalog.sql_stock(CAMERA) == 40 - 3
    await catalog.assert_clean()


async def test_audit_command_exits_non_zero_on_a_mismatch(catalog: CatalogUnderTest) -> None:
    await catalog.reserve("o-audit", (CAMERA, 1))
    code, output = await catalog.command("audit")
    assert code == 0, output
    allocated = (await catalog.level(CAMERA)).allocated
    # stock, allocated, stranded, counter, unflushed, refilling
    assert f"{CAMERA:<20} {40:>8} {allocated:>9} {0:>8} {allocated - 1:>8} {-1:>9} {0:>9}  ok" in output
    assert output.rstrip().endswith("\nclean")
    epoch = await catalog.parts.ledger.current_epoch() or ""
    await catalog.redis.incrby(catalog.parts.keys.stock(epoch, CAMERA), 5)  # a counter that lies
    code, output = await catalog.command("audit")
    assert code == 1
    assert "MISMATCH" in output and "1 not ok" in output and output.rstrip().endswith("NOT CLEAN")
