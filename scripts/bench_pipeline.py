"""make bench-pipeline: the order pipeline's speed, measured side by side in one run.

1. OrderPlaced -> rows: batched INSERT (100 per statement) vs row by row,
   on SQLite and MariaDB, through the order context's own store.
2. The whole local mesh: paced runs at fixed rates (BENCH_RATES, 50, 100 and
   200/s), each measuring PlaceOrder p50/p99 and the lag from its answer to the
   order row existing (p50/p99), each on an idle mesh; then PlaceOrder driven
   by ghz at a fixed concurrency (throughput, p50/p99).
3. Where the CPU goes: each process's CPU time per order over the paced runs
   (until the mesh is idle again, so the work an order causes after its answer
   counts too), and the throughput that total allows on this machine's cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as redis
from sqlalchemy import ColumnElement, func, literal_column, select

from common.order_ids import mint
from launcher.mesh import LocalMesh, free_offset
from mesh.db import create_engine, create_schema, reading
from mesh.local.procs import MariaDBServer, RedisServer
from mesh.money import Money
from order.events import status_changed
from order.models import metadata, orders
from order.orders import Address, Item, Order
from order.state import Status
from order.store import OrderStore
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2

ROOT = Path(__file__).resolve().parent.parent
GHZ = str(ROOT / ".tools/bin/ghz")
INSERTS = int(os.environ.get("BENCH_INSERTS", "2000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
RATES = [float(r) for r in os.environ.get("BENCH_RATES", "50,100,200").split(",")]
PRODUCT = "sku-1008"
CARD = {"number": "4432801561520454", "cvv": 672, "expiration_year": 2039, "expiration_month": 1}


def new_orders(count: int) -> list[Order]:
    now = datetime.now(UTC)
    price = Money.of("USD", 9, 500_000_000)
    return [
        Order(
            order_id=mint(f"user-{n % 50}", 1),
            user_id=f"user-{n % 50}",
            request_id=uuid.uuid4().hex,
            status=Status.PENDING,
            items=(Item(PRODUCT, 1, price), Item("sku-1004", 2, Money.of("USD", 24))),
            total=Money.of("USD", 63, 490_000_000),
            shipping_cost=Money.of("USD", 6, 490_000_000),
            address=Address("1 Main St", "Springfield", "IL", "US", "62701"),
            email="ada@example.com",
            trace_id="",
            created_at=now,
            updated_at=now,
        )
        for n in range(count)
    ]


async def insert_rates(url: str) -> tuple[float, float]:
    engine = create_engine(url)
    await create_schema(engine, metadata)
    store = OrderStore(engine, status_changed)
    now = datetime.now(UTC)
    batch = new_orders(INSERTS)
    started = time.perf_counter()
    for i in range(0, len(batch), 100):
        await store.insert(batch[i : i + 100], now)
    batched = len(batch) / (time.perf_counter() - started)
    single = new_orders(INSERTS // 4)  # row by row is slow: a quarter as many suffices
    started = time.perf_counter()
    for order in single:
        await store.insert([order], now)
    per_row = len(single) / (time.perf_counter() - started)
    await engine.dispose()
    return batched, per_row


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def ghz_place_order(address: str) -> dict[str, float]:
    data = json.dumps(
        {
            "request_id": "{{.UUID}}",
            "user_id": "bench-{{.WorkerID}}",
            "items": [{"product_id": PRODUCT, "quantity": 1}],
            "address": {"country": "US", "zip_code": "62701"},
            "email": "bench@example.com",
            "credit_card": CARD,
        }
    )
    ghz = await asyncio.create_subprocess_exec(
        GHZ, "--insecure", "--import-paths", str(ROOT / "protos"),
        "--proto", str(ROOT / "protos/ordermesh/checkout/v1/checkout.proto"),
        "--call", "ordermesh.checkout.v1.CheckoutService/PlaceOrder", "-d", data,
        "-c", str(CONCURRENCY), "-z", f"{SECONDS}s", "-O", "json", address, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    report = json.loads((await ghz.communicate())[0])
    percentiles = {p["percentage"]: p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
    ok = report.get("statusCodeDistribution", {}).get("OK", 0)
    return {"rps": ok / (report["total"] / 1e9), "p50": percentiles.get(50, 0.0), "p99": percentiles.get(99, 0.0)}


async def settle(redis_url: str, limit_seconds: float = 120) -> float:
    """Wait until every consumer group of every stream has read and acknowledged everything."""
    client = redis.Redis.from_url(redis_url)
    began = time.perf_counter()
    try:
        quiet = 0
        while quiet < 3 and time.perf_counter() - began < limit_seconds:
            busy = False
            async for key in client.scan_iter(_type="stream"):
                for group in await client.xinfo_groups(key):
                    busy = busy or bool(group["pending"]) or bool(group.get("lag"))
            quiet = 0 if busy else quiet + 1
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
    return time.perf_counter() - began


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


async def paced_lag(mesh: LocalMesh, rate: float) -> dict[str, Any]:
    """PlaceOrder at a fixed rate; lag = order row visible - answer received, or 0 when
    the row was there first (the catalog publishes OrderPlaced when it reserves the
    stock, before checkout charges the card, so under load the row often wins)."""
    answered: dict[str, float] = {}
    failures: list[str] = []
    latencies: list[float] = []
    seen: dict[str, float] = {}
    engine = create_engine(f"sqlite+aiosqlite:///{mesh.var_dir / 'order-0.db'}")
    stop = asyncio.Event()

    async def watch() -> None:
        # Only rows inserted since the last look (by SQLite's rowid): the watcher is
        # on the same cores as the mesh, and its cost must not grow with the backlog.
        rowid: ColumnElement[int] = literal_column("rowid")
        async with reading(engine) as connection:
            last = (
                await connection.execute(select(func.coalesce(func.max(rowid), 0)).select_from(orders))
            ).scalar_one()
        while not stop.is_set() or any(o not in seen for o in answered):
            async with reading(engine) as connection:
                found = (await connection.execute(select(rowid, orders.c.order_id).where(rowid > last))).all()
            now = time.perf_counter()
            for row_id, order_id in found:
                seen.setdefault(order_id, now)
                last = max(last, row_id)
            await asyncio.sleep(0.02)  # the lag's resolution; polling faster costs the mesh CPU
            if stop.is_set() and time.perf_counter() > deadline:
                break

    async with grpc.aio.insecure_channel(mesh.address("checkout")) as channel:
        stub = checkout_pb2_grpc.CheckoutServiceStub(channel)

        async def one(n: int) -> None:
            started = time.perf_counter()
            try:
                reply = await stub.PlaceOrder(
                    checkout_pb2.PlaceOrderRequest(
                        request_id=uuid.uuid4().hex,
                        user_id=f"lag-{n % 20}",
                        items=[common_pb2.LineItem(product_id=PRODUCT, quantity=1)],
                        address=common_pb2.Address(country="US", zip_code="62701"),
                        email="lag@example.com",
                        credit_card=common_pb2.CreditCard(**CARD),  # type: ignore[arg-type]
                    ),
                    timeout=30,
                )
            except grpc.aio.AioRpcError as error:
                failures.append(error.code().name)
                return
            answered[reply.order_id] = time.perf_counter()
            latencies.append((answered[reply.order_id] - started) * 1000)

        watcher = asyncio.create_task(watch())
        calls = []
        begin = time.perf_counter()
        for n in range(int(rate * SECONDS)):
            await asyncio.sleep(max(0.0, begin + n / rate - time.perf_counter()))
            calls.append(asyncio.create_task(one(n)))
        await asyncio.gather(*calls)
        achieved = len(answered) / (time.perf_counter() - begin)  # answered calls only
        deadline = time.perf_counter() + 30
        stop.set()
        await watcher
    await engine.dispose()
    # A row can be seen before its answer arrives (the insert races the reply): lag 0.
    lags = [max(0.0, seen[o] - t) * 1000 for o, t in answered.items() if o in seen]
    return {
        "rate": achieved,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "lag_p50": percentile(lags, 0.5),
        "lag_p99": percentile(lags, 0.99),
        "answered": float(len(answered)),
        "missing": float(len(answered) - len(lags)),
        "failed": float(len(failures)),
        "codes": ", ".join(f"{code} {n}" for code, n in Counter(failures).most_common()),
    }


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        mariadb = MariaDBServer(work / "mariadb").start()
        redis = RedisServer(work / "redis", appendonly=True).start()
        try:
            mariadb.create_database("orders_bench")
            inserts = {
                "SQLite": await insert_rates(f"sqlite+aiosqlite:///{work / 'orders.db'}"),
                "MariaDB": await insert_rates(mariadb.url("orders_bench")),
            }
            print("  measured inserts", file=sys.stderr, flush=True)
            mesh = LocalMesh(work / "mesh", offset=free_offset(), redis_url=redis.url)
            mesh.start(timeout=90)
            try:
                async with grpc.aio.insecure_channel(mesh.address("catalog")) as channel:
                    await catalog_pb2_grpc.CatalogServiceStub(channel).SetStock(
                        catalog_pb2.SetStockRequest(product_id=PRODUCT, stock=10_000_000)
                    )
                # Paced runs first, each on an idle mesh (a run that outruns the order
                # context leaves a backlog the next one would measure instead of its own lag).
                paced: dict[float, dict[str, Any]] = {}
                pids = {name: process.proc.pid for name, process in mesh.services.items() if process.proc}
                if redis.process is not None and redis.process.proc is not None:
                    pids["redis"] = redis.process.proc.pid
                pids["load (this process)"] = os.getpid()
                cpu: dict[float, dict[str, float]] = {}  # per rate: CPU seconds per answered order
                for rate in RATES:
                    before = cpu_snapshot(pids)
                    paced[rate] = await paced_lag(mesh, rate)
                    settled = await settle(redis.url)
                    after = cpu_snapshot(pids)
                    answered = max(paced[rate]["answered"], 1.0)
                    cpu[rate] = {name: (after[name] - before[name]) / answered for name in pids}
                    note = f"  measured paced {rate:.0f}/s; idle again after {settled:.0f} s"
                    print(note, file=sys.stderr, flush=True)
                closed = await ghz_place_order(mesh.address("checkout"))
                print("  measured PlaceOrder throughput", file=sys.stderr, flush=True)
            finally:
                mesh.stop()
        finally:
            redis.stop()
            mariadb.stop()
    print(f"\nOrderPlaced -> rows through the order store ({INSERTS} orders batched, 100 per INSERT)")
    print(f"{'database':<9} {'batched/s':>10} {'per-row/s':>10} {'ratio':>7}")
    for name, (batched, per_row) in inserts.items():
        print(f"{name:<9} {batched:>10.0f} {per_row:>10.0f} {batched / per_row:>6.1f}x")
    print(f"\nPlaceOrder on the local mesh ({os.cpu_count()} cores, every process on this machine)")
    print(f"closed loop, ghz, {CONCURRENCY} in flight, {SECONDS:.0f} s: {closed['rps']:.0f} orders/s, "
          f"p50 {closed['p50']:.0f} ms, p99 {closed['p99']:.0f} ms")  # fmt: skip
    for rate, run in paced.items():
        print(f"paced at {rate:.0f}/s for {SECONDS:.0f} s: achieved {run['rate']:.0f}/s, "
              f"p50 {run['p50']:.0f} ms, p99 {run['p99']:.0f} ms; "
              f"answer -> order row lag p50 {run['lag_p50']:.0f} ms, p99 {run['lag_p99']:.0f} ms, "
              f"rows not seen: {run['missing']:.0f}, failed calls: {run['failed']:.0f}"
              + (f" ({run['codes']})" if run["codes"] else ""))  # fmt: skip
    cores = os.cpu_count() or 1
    print("\nCPU per answered order, ms, each paced run until the mesh was idle again (the work an")
    print("order causes after its answer counts; an over-capacity run also pays for its failed calls)")
    names = sorted(pids, key=lambda name: -sum(run[name] for run in cpu.values()))
    print(f"{'process':<20}" + "".join(f"{f'at {rate:.0f}/s':>10}" for rate in cpu))
    for name in names:
        print(f"{name:<20}" + "".join(f"{run[name] * 1000:>10.2f}" for run in cpu.values()))
    totals = {rate: sum(run.values()) * 1000 for rate, run in cpu.items()}
    print(f"{'total':<20}" + "".join(f"{total:>10.2f}" for total in totals.values()))
    for rate, total in totals.items():
        print(f"at {rate:.0f}/s: 200 orders/s would need {total * 200 / 1000:.1f} cores; "
              f"the {cores} here allow about {cores * 1000 / total:.0f} orders/s")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
