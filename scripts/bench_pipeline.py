"""make bench-pipeline: what an order costs the whole local mesh, and the rate it sustains.

1. OrderPlaced -> rows: batched INSERT (100 per statement) vs row by row,
   on SQLite and MariaDB, through the order context's own store.
2. The whole local mesh on each profile (BENCH_PROFILES): embedded (SQLite +
   Redis Streams) and full (MariaDB + RocketMQ 5). A short warm-up (pools,
   scripts, the JVMs' first compilations), the idle CPU of every process
   (before and after the ladder), then paced PlaceOrder runs up a ladder of
   rates (BENCH_RATES, BENCH_SECONDS each), each from an idle mesh: the
   achieved rate, PlaceOrder p50/p99 and the lag from the answer to the order
   row (p50/p99). The ladder stops at the first rate the mesh does not
   sustain. Then PlaceOrder driven by ghz at a fixed concurrency (throughput,
   p50/p99).
3. Where the CPU goes: each process's CPU time per answered order at each rate,
   counted until the mesh is idle again (the work an order causes after its
   answer counts too) with the idle CPU of the same time taken out; and the
   cores 200 orders/s need.
4. The floor, in the same run: an empty grpc.aio handler paced at the same
   rates, its server CPU per call, times the server calls an order makes.

A rate is sustained when the achieved rate is within 5% of the asked one, no
call failed, every answered order's row appeared, and the lag p99 is under 1 s.
Every process (the load too) shares this machine's cores, so the figures are
what these cores allow together. The report is printed and saved for
docs/performance.md (scripts/benchreport.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import benchreport
import grpc
import profiling
import redis.asyncio as redis
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.order_ids import mint
from launcher.mesh import PROFILES, LocalMesh, free_offset
from launcher.topology import mesh_topology
from mesh.db import create_engine, create_schema, reading
from mesh.local.procs import ManagedProcess, MariaDBServer, RedisServer, free_port, port_open, wait_until
from mesh.local.rocketmq import RocketMQServer
from mesh.money import Money
from order.events import status_changed
from order.models import metadata, order_outbox, orders
from order.orders import Address, Item, Order
from order.state import Status
from order.store import OrderStore
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2

ROOT = Path(__file__).resolve().parent.parent
GHZ = str(ROOT / ".tools/bin/ghz")
INSERTS = int(os.environ.get("BENCH_INSERTS", "2000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))  # per paced run: two profiles' ladders fit in ~6 min
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
RATES = [float(r) for r in os.environ.get("BENCH_RATES", "50,100,150,200").split(",")]
PROFILE_NAMES = os.environ.get("BENCH_PROFILES", "embedded,full").split(",")
WARMUP_SECONDS = float(os.environ.get("BENCH_WARMUP_SECONDS", "4"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "5"))
SETTLE_LIMIT = 60.0  # an overrun mesh may take longer; its run has failed anyway
RATE_TOLERANCE = 0.05
LAG_LIMIT_MS = 1000.0
TARGET_RATE, TARGET_MS = 100.0, 8.0  # issue 15: at most 8 ms of CPU per order at 100/s
GOAL_RATE = 200.0
POLL_SECONDS = 0.02  # the lag's resolution; polling faster costs the mesh CPU
WATCH_AT_MOST = 500  # users asked about per poll
BUSY = (Status.PAID, Status.SHIPPING)  # statuses the dispatcher moves on within seconds
LOAD = "load (this process)"
PRODUCT = "sku-1008"
CARD = {"number": "4432801561520454", "cvv": 672, "expiration_year": 2039, "expiration_month": 1}
DESCRIPTIONS = {"embedded": "SQLite + Redis Streams", "full": "MariaDB + RocketMQ 5"}


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# --- 1. OrderPlaced -> rows ---------------------------------------------------------------


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


# --- CPU ----------------------------------------------------------------------------------


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process with its descendants (a service run
    with WORKERS=N forks its workers), except this process: every server is its child."""
    table = profiling.process_table()
    return {
        name: table.get(pid, (0, 0.0))[1] if name == LOAD else profiling.tree_cpu_seconds(pid, table)
        for name, pid in pids.items()
    }


# --- the lag from answer to row -----------------------------------------------------------


class RowWatcher:
    """When each paced order's row appears in the order database. Every paced call has
    a user id of its own and ``orders`` has an index on user_id, so a poll asks only
    about the users still waiting: the same on SQLite and MariaDB, and cheap however
    big the table (the watcher shares the cores with the mesh it measures)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.waiting: dict[str, None] = {}  # users called and not seen yet, oldest first
        self.seen: dict[str, float] = {}

    def expect(self, user_id: str) -> None:
        self.waiting[user_id] = None

    def forget(self, user_id: str) -> None:
        self.waiting.pop(user_id, None)

    async def poll(self) -> None:
        # The oldest only: rows land roughly in call order, and a backlog must not
        # make every poll bigger.
        users = list(itertools.islice(self.waiting, WATCH_AT_MOST))
        if not users:
            return
        query = select(orders.c.user_id).where(orders.c.user_id.in_(users))
        async with reading(self.engine) as connection:
            found = (await connection.execute(query)).scalars().all()
        now = time.perf_counter()
        for user_id in found:
            self.seen.setdefault(user_id, now)
            self.waiting.pop(user_id, None)

    async def run(self, stop: asyncio.Event, linger: float = 30.0) -> None:
        """Poll until ``stop`` is set (every call has returned), then until no answered
        order's row is awaited any more, for at most ``linger`` s."""
        while not stop.is_set():
            await self.poll()
            await asyncio.sleep(POLL_SECONDS)
        deadline = time.perf_counter() + linger
        while self.waiting and time.perf_counter() < deadline:
            await self.poll()
            await asyncio.sleep(POLL_SECONDS)


# --- paced runs ---------------------------------------------------------------------------


@dataclass
class Paced:
    """One paced run: PlaceOrder at ``asked`` calls/s, and what each process spent per order."""

    asked: float
    achieved: float = 0.0
    latencies: list[float] = field(default_factory=list)  # ms
    lags: list[float] = field(default_factory=list)  # ms, answer -> row
    answered: int = 0
    unseen: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    used: dict[str, float] = field(default_factory=dict)  # CPU s per process, from the first call until idle
    elapsed: float = 0.0  # s, the same span
    cpu: dict[str, float] = field(default_factory=dict)  # CPU s per answered order, idle taken out
    settle_s: float = 0.0

    def charge(self, idle: dict[str, float]) -> None:
        """CPU per answered order: what each process used less what it uses idle over the same time."""
        self.cpu = {
            # Never below 0: an idle process's CPU varies a little from second to second.
            name: max(0.0, used - idle[name] * self.elapsed) / max(self.answered, 1)
            for name, used in self.used.items()
        }

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def shortfalls(self) -> list[str]:
        """Why the rate was not sustained; none when it was."""
        reasons = []
        if self.achieved < self.asked * (1 - RATE_TOLERANCE):
            reasons.append(f"achieved {self.achieved:.0f}/s")
        if self.failed:
            codes = ", ".join(f"{code} {n}" for code, n in self.failures.most_common())
            reasons.append(f"{self.failed} calls failed ({codes})")
        if self.unseen:
            reasons.append(f"{self.unseen} rows never seen")
        if not percentile(self.lags, 0.99) < LAG_LIMIT_MS:
            reasons.append(f"lag p99 {percentile(self.lags, 0.99):.0f} ms")
        return reasons


def place_order_request(user_id: str) -> checkout_pb2.PlaceOrderRequest:
    return checkout_pb2.PlaceOrderRequest(
        request_id=uuid.uuid4().hex,
        user_id=user_id,
        items=[common_pb2.LineItem(product_id=PRODUCT, quantity=1)],
        address=common_pb2.Address(country="US", zip_code="62701"),
        email="lag@example.com",
        credit_card=common_pb2.CreditCard(**CARD),  # type: ignore[arg-type]
    )


async def paced(
    checkout: checkout_pb2_grpc.CheckoutServiceAsyncStub, engine: AsyncEngine, rate: float, seconds: float = SECONDS
) -> Paced:
    """PlaceOrder at a fixed rate for ``seconds``; achieved = answered calls over the time from
    the first call to the last answer."""
    run = Paced(rate)
    watcher = RowWatcher(engine)
    answered: dict[str, float] = {}  # user -> when its answer arrived
    tag = f"lag-{int(rate)}-{uuid.uuid4().hex[:6]}"

    async def one(n: int) -> None:
        user_id = f"{tag}-{n}"
        watcher.expect(user_id)
        started = time.perf_counter()
        try:
            await checkout.PlaceOrder(place_order_request(user_id), timeout=30)
        except grpc.aio.AioRpcError as error:
            watcher.forget(user_id)
            run.failures[error.code().name] += 1
            return
        answered[user_id] = time.perf_counter()
        run.latencies.append((answered[user_id] - started) * 1000)

    stop = asyncio.Event()
    watching = asyncio.create_task(watcher.run(stop))
    calls = []
    begin = time.perf_counter()
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, begin + n / rate - time.perf_counter()))
        calls.append(asyncio.create_task(one(n)))
    await asyncio.gather(*calls)
    run.achieved = len(answered) / (time.perf_counter() - begin)
    stop.set()
    await watching
    # The catalog publishes OrderPlaced when it reserves the stock, before checkout
    # charges the card: a row seen before its answer arrived has no lag.
    run.lags = [max(0.0, watcher.seen[u] - t) * 1000 for u, t in answered.items() if u in watcher.seen]
    run.answered, run.unseen = len(answered), len(answered) - len(run.lags)
    return run


async def busy(client: redis.Redis, engine: AsyncEngine) -> bool:
    """Whether the mesh still has work left from the orders placed: a stream entry unread
    or unacknowledged (consumers, forwarders), an order the dispatcher has not shipped
    yet, or a status event in the order outbox. RocketMQ's queues are not looked at:
    an order's rows and status changes stand for them."""
    async for key in client.scan_iter(_type="stream"):
        for group in await client.xinfo_groups(key):
            if group["pending"] or group.get("lag"):
                return True
    queries: list[Select[int]] = [
        select(func.count()).select_from(orders).where(orders.c.status.in_([str(s) for s in BUSY])),
        select(func.count()).select_from(order_outbox),
    ]
    async with reading(engine) as connection:
        for query in queries:
            if (await connection.execute(query)).scalar_one():
                return True
    return False


async def settle(redis_url: str, engine: AsyncEngine, limit: float = SETTLE_LIMIT) -> float:
    """Wait until the mesh is idle (three looks in a row, 0.5 s apart); the seconds it took."""
    client = redis.Redis.from_url(redis_url)
    began = time.perf_counter()
    try:
        quiet = 0
        while quiet < 3 and time.perf_counter() - began < limit:
            quiet = 0 if await busy(client, engine) else quiet + 1
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
    return time.perf_counter() - began


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


# --- one profile --------------------------------------------------------------------------


@dataclass
class Bench:
    """A running mesh of one profile and what its measurements need."""

    profile: str
    mesh: LocalMesh
    engine: AsyncEngine  # the order database
    pids: dict[str, int]


@dataclass
class ProfileResult:
    profile: str
    started_s: float
    idle_before: dict[str, float]  # CPU s per s, per process, before the ladder
    idle_after: dict[str, float]  # and after it
    runs: list[Paced]
    closed: dict[str, float]
    idle: dict[str, float] = field(init=False)  # the mean of the two: what the runs are charged

    def __post_init__(self) -> None:
        self.idle = {name: (cpu + self.idle_after[name]) / 2 for name, cpu in self.idle_before.items()}
        for run in self.runs:
            run.charge(self.idle)


def process_ids(mesh: LocalMesh, redis_server: RedisServer) -> dict[str, int]:
    pids = {name: process.proc.pid for name, process in mesh.services.items() if process.proc}
    servers = {"redis": redis_server.process, "mariadb": mesh.mariadb.process if mesh.mariadb else None}
    if mesh.rocketmq is not None:
        # The proxy runs the broker in its own JVM: two processes in all.
        servers["rocketmq broker+proxy"] = mesh.rocketmq.proxy
        servers["rocketmq namesrv"] = mesh.rocketmq.namesrv
    for name, process in servers.items():
        if process is not None and process.proc is not None:
            pids[name] = process.proc.pid
    pids[LOAD] = os.getpid()
    return pids


@contextmanager
def running_mesh(profile: str, work: Path, redis_url: str, mariadb: MariaDBServer) -> Iterator[LocalMesh]:
    settings = PROFILES[profile]
    rocketmq = None
    if settings.transport == "rocketmq":
        # Started before the mesh's ports are chosen, so they cannot collide with the broker's.
        topology = mesh_topology()
        rocketmq = RocketMQServer(work / "rocketmq", topology.topics, topology.groups)
    try:
        if rocketmq is not None:
            rocketmq.start()
        mesh = LocalMesh(
            work / profile,
            offset=free_offset(),
            redis_url=redis_url,
            profile=settings,
            mariadb=mariadb if settings.database == "mariadb" else None,
            rocketmq=rocketmq,
        )
        try:
            mesh.start(timeout=180)
            yield mesh
        finally:
            mesh.stop()
    finally:
        if rocketmq is not None:
            rocketmq.stop()


async def idle_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds per second of each process with no order in flight: periodic jobs,
    consumers' polls, the JVMs' housekeeping."""
    before, started = cpu_snapshot(pids), time.perf_counter()
    await asyncio.sleep(IDLE_SECONDS)
    after, elapsed = cpu_snapshot(pids), time.perf_counter() - started
    return {name: (after[name] - before[name]) / elapsed for name in pids}


async def measured(bench: Bench, checkout: checkout_pb2_grpc.CheckoutServiceAsyncStub, rate: float) -> Paced:
    """A paced run and the CPU it cost, until the mesh is idle again."""
    before, started = cpu_snapshot(bench.pids), time.perf_counter()
    run = await paced(checkout, bench.engine, rate)
    run.settle_s = await settle(bench.mesh.redis_url, bench.engine)
    after, run.elapsed = cpu_snapshot(bench.pids), time.perf_counter() - started
    run.used = {name: after[name] - before[name] for name in bench.pids}
    return run


async def ladder(bench: Bench, checkout: checkout_pb2_grpc.CheckoutServiceAsyncStub) -> list[Paced]:
    """The paced rates from the lowest up, each from an idle mesh (a run that outruns the
    order context leaves a backlog the next one would measure instead of its own lag),
    until one is not sustained."""
    runs = []
    for rate in RATES:
        run = await measured(bench, checkout, rate)
        runs.append(run)
        verdict = "; ".join(run.shortfalls()) or "sustained"
        progress(f"{bench.profile}: paced {rate:.0f}/s: {verdict}; idle again after {run.settle_s:.0f} s")
        if run.shortfalls():
            break
    return runs


async def bench_profile(profile: str, work: Path, redis_server: RedisServer, mariadb: MariaDBServer) -> ProfileResult:
    # A Redis database of its own per profile: the stock counters and streams of one
    # are never read by the other's processes.
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{list(PROFILES).index(profile)}"
    started = time.perf_counter()
    with running_mesh(profile, work, redis_url, mariadb) as mesh:
        started_s = time.perf_counter() - started
        progress(f"{profile}: the mesh is up in {started_s:.0f} s")
        engine = create_engine(mesh.database_url("order-0"), pool_size=2)
        bench = Bench(profile, mesh, engine, process_ids(mesh, redis_server))
        try:
            async with grpc.aio.insecure_channel(mesh.address("catalog")) as channel:
                await catalog_pb2_grpc.CatalogServiceStub(channel).SetStock(
                    catalog_pb2.SetStockRequest(product_id=PRODUCT, stock=10_000_000)
                )
            async with grpc.aio.insecure_channel(mesh.address("checkout")) as channel:
                checkout = checkout_pb2_grpc.CheckoutServiceStub(channel)
                await warm_up(bench, checkout)
                # Idle before and after the ladder: a fresh JVM still compiles and
                # settles for a while, and the two tell whether it had.
                idle_before = await idle_cpu(bench.pids)
                runs = await ladder(bench, checkout)
                idle_after = await idle_cpu(bench.pids)
            closed = await ghz_place_order(mesh.address("checkout"))
            progress(f"{profile}: measured PlaceOrder throughput")
        finally:
            await engine.dispose()
    return ProfileResult(profile, started_s, idle_before, idle_after, runs, closed)


async def warm_up(bench: Bench, checkout: checkout_pb2_grpc.CheckoutServiceAsyncStub) -> None:
    """Connections, pools, Lua scripts, the broker's routes and the JVMs' first
    compilations: paid once by a long-running mesh, not per order."""
    if WARMUP_SECONDS > 0:
        await paced(checkout, bench.engine, RATES[0], WARMUP_SECONDS)
        await settle(bench.mesh.redis_url, bench.engine)


# --- the report ---------------------------------------------------------------------------


def mesh_total(cpu: dict[str, float]) -> float:
    """The mesh's share: every process but the load generator."""
    return sum(value for name, value in cpu.items() if name != LOAD)


def mesh_ms(run: Paced) -> float:
    """The mesh's CPU per answered order, ms."""
    return mesh_total(run.cpu) * 1000


def inserts_report(inserts: dict[str, tuple[float, float]]) -> list[str]:
    lines = [
        f"OrderPlaced -> rows through the order store ({INSERTS} orders batched, 100 per INSERT)",
        f"{'database':<9} {'batched/s':>10} {'per-row/s':>10} {'ratio':>7}",
    ]
    for name, (batched, per_row) in inserts.items():
        lines.append(f"{name:<9} {batched:>10.0f} {per_row:>10.0f} {batched / per_row:>6.1f}x")
    return lines


def paced_report(result: ProfileResult) -> list[str]:
    lines = [
        f"{'asked/s':>7} {'achieved/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'lag p50':>8} {'lag p99':>8}"
        f" {'failed':>6} {'unseen':>6} {'idle after':>10}  verdict"
    ]
    for run in result.runs:
        verdict = "; ".join(run.shortfalls()) or "sustained"
        lines.append(
            f"{run.asked:>7.0f} {run.achieved:>10.1f} {percentile(run.latencies, 0.5):>7.0f}"
            f" {percentile(run.latencies, 0.99):>7.0f} {percentile(run.lags, 0.5):>8.0f}"
            f" {percentile(run.lags, 0.99):>8.0f} {run.failed:>6} {run.unseen:>6} {run.settle_s:>9.0f}s  {verdict}"
        )
    skipped = [f"{rate:.0f}/s" for rate in RATES[len(result.runs) :]]
    if skipped:
        lines.append(f"(not run: {', '.join(skipped)}; the ladder stops at the first rate not sustained)")
    return lines


def cpu_report(result: ProfileResult) -> list[str]:
    runs = result.runs
    names = sorted(result.idle, key=lambda name: (name == LOAD, -sum(run.cpu[name] for run in runs)))
    before, after = mesh_total(result.idle_before), mesh_total(result.idle_after)
    lines = [
        "CPU per answered order, ms: from the start of each paced run until the mesh was idle again,",
        "less the process's idle CPU over that time (idle: ms of CPU per second with no order in flight,",
        f"the mean of before the ladder and after it; the mesh's was {before * 1000:.0f} and {after * 1000:.0f} ms/s)",
        f"{'process':<22}{'idle ms/s':>10}" + "".join(f"{f'at {run.asked:.0f}/s':>10}" for run in runs),
    ]
    for name in names:
        cells = "".join(f"{run.cpu[name] * 1000:>10.2f}" for run in runs)
        if name == LOAD:
            lines.append(f"{'total (the mesh)':<22}{mesh_total(result.idle) * 1000:>10.1f}" + total_cells(runs))
        lines.append(f"{name:<22}{result.idle[name] * 1000:>10.1f}{cells}")
    return lines


def total_cells(runs: list[Paced]) -> str:
    return "".join(f"{mesh_ms(run):>10.2f}" for run in runs)


def sustained(result: ProfileResult) -> Paced | None:
    return next((run for run in reversed(result.runs) if not run.shortfalls()), None)


def cost_basis(result: ProfileResult) -> Paced:
    """The run whose CPU per order best foretells higher rates: the fastest one in which
    every call was answered and every row seen. Its lag may have been too long; its
    CPU still counts whole orders (batches grow with the rate, so CPU per order falls)."""
    return next((run for run in reversed(result.runs) if not run.failed and not run.unseen), result.runs[0])


def target_lines(result: ProfileResult) -> list[str]:
    at_target = next((run for run in result.runs if run.asked == TARGET_RATE), None)
    if at_target is None:
        cpu_line = f"total CPU per answered order at {TARGET_RATE:.0f}/s: not measured (the ladder stopped below it)"
    else:
        total = mesh_ms(at_target)
        verdict = "met" if total <= TARGET_MS else "MISSED"
        cpu_line = (
            f"total CPU per answered order at {TARGET_RATE:.0f}/s: {total:.1f} ms "
            f"(target: at most {TARGET_MS:.0f}): {verdict}"
        )
    best = sustained(result)
    failed = next((run for run in result.runs if run.shortfalls()), None)
    rate_line = f"sustainable rate: {best.asked:.0f}/s" if best else f"sustainable rate: below {RATES[0]:.0f}/s"
    if failed is not None:
        rate_line += f"; {failed.asked:.0f}/s was not ({'; '.join(failed.shortfalls())})"
    return [cpu_line, rate_line, *cores_lines(result, cost_basis(result))]


def cores_needed(result: ProfileResult, basis: Paced) -> float:
    """The cores GOAL_RATE orders/s need at ``basis``'s CPU per order, plus the idle CPU."""
    return mesh_ms(basis) / 1000 * GOAL_RATE + mesh_total(result.idle)


def cores_lines(result: ProfileResult, basis: Paced) -> list[str]:
    per_order, idle = mesh_ms(basis) / 1000, mesh_total(result.idle)
    cores = os.cpu_count() or 1
    needed = cores_needed(result, basis)
    allowed = (cores - idle) / per_order if per_order else float("inf")
    # Batches grow with the rate, so a lower rate's CPU per order overstates a higher one's.
    falls = ", which falls as the rate grows" if basis.asked < GOAL_RATE else ""
    return [
        f"{GOAL_RATE:.0f} orders/s needs {needed:.1f} cores "
        f"(the CPU per order of {basis.asked:.0f}/s{falls}, plus {idle:.2f} cores idle);",
        f"by CPU alone the {cores} cores here would allow about {allowed:.0f} orders/s",
    ]


def profile_report(result: ProfileResult) -> list[str]:
    closed = result.closed
    lines = [
        f"== {result.profile} profile: {DESCRIPTIONS.get(result.profile, result.profile)}"
        f" (the mesh up in {result.started_s:.0f} s) ==",
        f"PlaceOrder closed loop, ghz, {CONCURRENCY} in flight, {SECONDS:.0f} s: {closed['rps']:.0f} orders/s, "
        f"p50 {closed['p50']:.0f} ms, p99 {closed['p99']:.0f} ms",
        "",
        f"Paced PlaceOrder, {SECONDS:.0f} s per rate, each from an idle mesh (ms; lag: answer -> order row)",
        *paced_report(result),
        "",
        *cpu_report(result),
        "",
        *target_lines(result),
    ]
    return lines


def summary(results: list[ProfileResult]) -> list[str]:
    lines = [
        f"Summary: the mesh's CPU per answered order at {TARGET_RATE:.0f}/s (idle apart),"
        f" the cores {GOAL_RATE:.0f}/s need (idle in)",
        f"{'profile':<10} {'sustained':>10} {f'ms at {TARGET_RATE:.0f}/s':>12} {f'cores for {GOAL_RATE:.0f}/s':>15}",
    ]
    for result in results:
        best = sustained(result)
        at_target = next((run for run in result.runs if run.asked == TARGET_RATE), None)
        lines.append(
            f"{result.profile:<10} {f'{best.asked:.0f}/s' if best else '-':>10}"
            f" {f'{mesh_ms(at_target):.1f}' if at_target else '-':>12}"
            f" {cores_needed(result, cost_basis(result)):>15.1f}"
        )
    return lines


def report(
    inserts: dict[str, tuple[float, float]], results: list[ProfileResult], load_before: str, floor: dict[float, float]
) -> str:
    lines = [
        f"{os.cpu_count()} cores shared by every process (the mesh, Redis, MariaDB, RocketMQ and the load);"
        f" load average {load_before} before, {load_average()} after; traces sampled at {SAMPLING}"
        " (OTEL_SAMPLING_RATIO; the chart's default)",
        "",
        *inserts_report(inserts),
    ]
    for result in results:
        lines += ["", *profile_report(result)]
    lines += [
        "",
        *summary(results),
        "",
        *floor_report(floor),
        "",
        f"A rate is sustained when the achieved rate is within {RATE_TOLERANCE:.0%} of the asked one, no call",
        f"failed, every answered order's row appeared and the lag p99 is under {LAG_LIMIT_MS / 1000:.0f} s.",
        f"Warm-up before measuring: {WARMUP_SECONDS:.0f} s at {RATES[0]:.0f}/s; idle CPU over {IDLE_SECONDS:.0f} s.",
    ]
    return "\n".join(lines)


# --- the floor: what gRPC alone costs at these rates --------------------------------------

# Server calls per order: PlaceOrder (checkout), ReserveStock (catalog), Charge
# (payment), and GetQuote and ShipOrder (shipping, so at twice the order rate).
CALLS_AT_RATE, CALLS_AT_TWICE = 3, 2


async def empty_handler_cost(rates: list[float]) -> dict[float, float]:
    """Server CPU ms per call of an empty grpc.aio handler (scripts/bare_catalog.py)
    paced at each rate: a Python gRPC server's fixed cost per call, which at low
    rates is mostly waking up for each call (the poller thread, the event loop)."""
    port = free_port()
    server = ManagedProcess(
        "empty", [sys.executable, str(ROOT / "scripts/bare_catalog.py"), str(port)], Path(os.devnull), None
    )
    server.start()
    costs: dict[float, float] = {}
    data = json.dumps({"order_id": "floor-{{.RequestNumber}}", "items": [{"product_id": "p", "quantity": 1}]})
    try:
        wait_until(lambda: port_open(port), 30, "the empty handler to listen")
        assert server.proc is not None
        for rate in rates:
            before = profiling.tree_cpu_seconds(server.proc.pid)
            ghz = await asyncio.create_subprocess_exec(
                GHZ, "--insecure", "--import-paths", str(ROOT / "protos"),
                "--proto", str(ROOT / "protos/ordermesh/catalog/v1/catalog.proto"),
                "--call", "ordermesh.catalog.v1.CatalogService/ReserveStock", "-d", data,
                "-c", "4", "-r", str(int(rate)), "-z", "5s", "-O", "json", f"127.0.0.1:{port}",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            answered = json.loads((await ghz.communicate())[0]).get("statusCodeDistribution", {}).get("OK", 0)
            costs[rate] = (profiling.tree_cpu_seconds(server.proc.pid) - before) * 1000 / max(answered, 1)
    finally:
        server.stop()
    return costs


def floor_report(costs: dict[float, float]) -> list[str]:
    lines = [
        "The floor: an empty grpc.aio handler (no middleware, no work) paced at the same rates, same run;",
        f"an order makes {CALLS_AT_RATE + CALLS_AT_TWICE} server calls ({CALLS_AT_TWICE} of them to shipping,"
        " at twice the order rate), and client calls cost more on top",
        f"{'orders/s':>9} {'ms per call':>12} {'server calls per order, ms':>28}",
    ]
    for rate in RATES:
        if rate in costs and 2 * rate in costs:
            per_order = CALLS_AT_RATE * costs[rate] + CALLS_AT_TWICE * costs[2 * rate]
            lines.append(f"{rate:>9.0f} {costs[rate]:>12.3f} {per_order:>28.2f}")
    return lines


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


# Traces sampled as the Helm chart samples them (otel.samplingRatio), unless set:
# `make run` records every trace, which costs about 1 ms of CPU more per order.
SAMPLING = os.environ.setdefault("OTEL_SAMPLING_RATIO", "0.1")


async def main() -> None:
    load_before = load_average()
    results: list[ProfileResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        mariadb = MariaDBServer(work / "mariadb").start()
        redis_server = RedisServer(work / "redis", appendonly=True).start()
        try:
            mariadb.create_database("orders_bench")
            inserts = {
                "SQLite": await insert_rates(f"sqlite+aiosqlite:///{work / 'orders.db'}"),
                "MariaDB": await insert_rates(mariadb.url("orders_bench")),
            }
            progress("measured inserts")
            for profile in PROFILE_NAMES:
                results.append(await bench_profile(profile, work, redis_server, mariadb))
            floor = await empty_handler_cost(sorted({r for rate in RATES for r in (rate, 2 * rate)}))
            progress("measured the empty handler")
        finally:
            redis_server.stop()
            mariadb.stop()
    text = report(inserts, results, load_before, floor)
    print("\n" + text)
    benchreport.save("pipeline", "The order pipeline: CPU per order and the sustainable rate", text)


if __name__ == "__main__":
    asyncio.run(main())
