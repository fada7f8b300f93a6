"""One chaos scenario: a steady load, one fault, recovery, a quiet mesh, the global auditor.

Each scenario gets a mesh of its own (its own redis-server with an append-only
file, SQLite under a temporary folder; loopback only). A separate process
places orders at a steady rate for the whole run (``python -m loadgen``, which
retries with the same request_id and saves every order id it was answered); a
third of the way in the scenario injects its fault and undoes it; the time to
recover runs until every service answers its health check SERVING and a
PlaceOrder succeeds again. When the load has ended, the global auditor
(``python -m auditor``) checks every acknowledged order is stored once, no
stock oversold, no money kept on a cancelled order, every reservation, payment
and shipment where its order's status says.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chaos.proxy import Proxy
from launcher.mesh import PROFILES, LocalMesh, free_offset, is_serving
from mesh.db import create_engine, reading
from mesh.local.procs import ManagedProcess, MariaDBServer, RedisServer, free_port
from mesh.local.rocketmq import RocketMQServer
from order.models import orders
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2

PRODUCTS = ["sku-1004", "sku-1005", "sku-1008", "sku-1009"]
CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")


@dataclass
class Chaos:
    """What a scenario may break: the mesh's processes (a second catalog replica,
    "catalog-2", when the scenario asks for one), its Redis, MariaDB and RocketMQ
    on the full profile, and the proxies on the links the scenario named."""

    mesh: LocalMesh
    redis: RedisServer
    proxies: dict[str, Proxy] = field(default_factory=dict)
    replicas: dict[str, ManagedProcess] = field(default_factory=dict)
    # The summaries of loads the fault started itself (a burst, the storm): they
    # count in the row, and their orders are acknowledged ones for the auditor.
    loads: list[dict[str, Any]] = field(default_factory=list)
    # What the fault itself checked and found wrong (the storm's exact count of sales).
    problems: list[str] = field(default_factory=list)
    replica_ports: dict[str, int] = field(default_factory=dict)

    def process(self, name: str) -> ManagedProcess:
        return self.replicas[name] if name in self.replicas else self.mesh.services[name]

    def kill(self, name: str, signal_number: int) -> None:
        process = self.process(name)
        process.signal(signal_number)
        process.wait(30)
        process.stop()  # reaps it and closes its log

    def restart(self, name: str) -> None:
        self.process(name).start()

    @property
    def mariadb(self) -> MariaDBServer:
        assert self.mesh.mariadb is not None, "a full-profile scenario"
        return self.mesh.mariadb

    @property
    def rocketmq(self) -> RocketMQServer:
        assert self.mesh.rocketmq is not None, "a full-profile scenario"
        return self.mesh.rocketmq


# The links a scenario may put a proxy on: the load's calls to checkout, every
# process's calls to catalog, payment or shipping, and catalog-2's to Redis.
LINKS = ("checkout", "catalog", "payment", "shipping", "redis@catalog-2")


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str
    inject: Callable[[Chaos], Awaitable[None]]
    profile: str = "embedded"  # or "full": RocketMQ and MariaDB
    proxied: tuple[str, ...] = ()  # of LINKS
    catalog_replicas: int = 1  # 2: a second catalog process, and checkout spreads its calls over both
    env: Mapping[str, str] = field(default_factory=dict)  # settings for every process


# Order states a quiet mesh has none of: each is a step some worker still owes
# (reconcile a payment, ship, ship again). PENDING an order waiting for review's
# approval is not: that waits for a person.
OWED = ("PENDING", "PAID", "SHIPPING", "SHIP_FAILED")


@dataclass(frozen=True)
class Books:
    """The order database, read by the harness itself (the auditor reads it too)."""

    persisted: int  # orders stored
    lost: int  # acknowledged ids not stored
    duplicated: int  # request_ids stored more than once
    owed: dict[str, int]  # orders still in a state some worker owes a step (should be empty)
    quiet_s: float  # from the end of the load until nothing was owed


@dataclass
class Row:
    scenario: str
    fault: str
    attempted: int
    answered: int
    failed: int
    retried: int
    recovered_s: float
    books: Books  # what the order database holds once the mesh is quiet
    codes: dict[str, int]  # the final answer of every call
    verdict: str  # the auditor's last line: "clean", or what it found
    report: str  # the auditor's whole output

    def violations(self, *invariants: str) -> int:
        """The auditor's count of violations of these invariants (its table's third column)."""
        counts: dict[str, int] = {}
        for line in self.report.splitlines()[1:]:
            if not line.strip():
                break
            name = line.rpartition("  ")[0]  # "<name> <checked> <violations>  <verdict>"
            fields = name.split()
            if len(fields) >= 3 and fields[-1].isdigit():
                counts[" ".join(fields[:-2])] = int(fields[-1])
        return sum(counts.get(invariant, 0) for invariant in invariants)

    @property
    def lost_or_duplicated(self) -> int:
        return self.violations("orders: each stored once (and every acknowledged one)")

    @property
    def clean(self) -> bool:
        books = self.books
        return self.verdict == "clean" and not (books.lost or books.duplicated or books.owed)

    @property
    def oversold(self) -> int:
        return self.violations("stock: SQL, Redis and journal agree", "stock: units reserved = units of live orders")

    @property
    def money_kept(self) -> int:
        return self.violations("money: every capture belongs to a live order")


# A dispatcher killed between claiming an order (SHIPPING) and recording SHIPPED
# leaves the claim to recover-shipping, which ships it again once the claim is
# SHIP_CLAIM_TIMEOUT_SECONDS old (120 by default): 10 here, so that recovery
# happens within the run and the auditor sees its result.
# A PENDING order whose payment outcome checkout never heard (a call dropped, a
# late answer) is asked about again with a backoff doubling from 10 s to 120 s:
# 20 s at most here, so the mesh is quiet within the run.
# An order PENDING because checkout never called payment (its breaker was open)
# has no charge to find: it expires at the end of its payment window (30 min),
# 60 s here, and gives its stock back within the run.
MESH_SETTINGS = {
    "SHIP_CLAIM_TIMEOUT_SECONDS": "10",
    "RECONCILE_BACKOFF_MAX_SECONDS": "20",
    "ORDER_TIMEOUT_SECONDS": "60",
}


async def run(scenario: Scenario, work: Path, *, rate: float, seconds: float) -> Row:
    redis = RedisServer(work / "redis", appendonly=True).start()
    mesh = LocalMesh(
        work / "mesh", offset=free_offset(), redis_url=redis.url, profile=PROFILES[scenario.profile],
        env={**MESH_SETTINGS, **scenario.env},
    )  # fmt: skip
    chaos = Chaos(mesh, redis)
    try:
        await _wire(chaos, scenario)
        # In a thread: the proxies run on this loop, and the gateway is ready only
        # once it reaches the contexts through them.
        await asyncio.to_thread(mesh.start, 180)
        await _start_replicas(chaos, work)
        await restock(mesh)
        load = await start_load(chaos.proxies["checkout"].address if "checkout" in chaos.proxies else
                                mesh.address("checkout"), rate=rate, seconds=seconds, products=PRODUCTS)  # fmt: skip
        await asyncio.sleep(seconds / 3)
        began = time.monotonic()
        await scenario.inject(chaos)
        probe = await _recovered(chaos)
        recovered = time.monotonic() - began
        loads = [await finish_load(load), *chaos.loads]
        answered = [order_id for summary in loads for order_id in summary["order_ids"]] + [probe]
        books = await books_when_quiet(mesh, answered)
        _, report = await audit_report(mesh, answered, work, settle=60)
    finally:
        for replica in chaos.replicas.values():
            replica.stop()
        mesh.stop()
        for proxy in chaos.proxies.values():
            await proxy.stop()
        redis.stop()
    codes: Counter[str] = sum((Counter(summary["codes"]) for summary in loads), Counter())
    verdict = report.rstrip().splitlines()[-1] if report.strip() else "no report"
    return Row(
        scenario.name,
        scenario.fault,
        attempted=sum(int(summary["attempted"]) for summary in loads),
        answered=codes["OK"],
        failed=sum(int(summary["failed"]) for summary in loads),
        retried=sum(int(summary["retried"]) for summary in loads),
        recovered_s=recovered,
        books=books,
        codes=dict(codes),
        verdict="; ".join(chaos.problems) if chaos.problems and verdict == "clean" else verdict,
        report=report + "".join(f"\n{problem}" for problem in chaos.problems),
    )


async def _wire(chaos: Chaos, scenario: Scenario) -> None:
    """Proxies on the links the scenario names, and every process pointed at them."""
    mesh = chaos.mesh
    for link in scenario.proxied:
        upstream = chaos.redis.url.split("//")[1].split("/")[0] if link.startswith("redis@") else mesh.address(link)
        chaos.proxies[link] = await Proxy(link, upstream).start()
    for context in ("catalog", "payment", "shipping"):
        if context in chaos.proxies:
            mesh.env[f"{context.upper()}_ADDRESS"] = chaos.proxies[context].address
    if scenario.catalog_replicas > 1:
        chaos.replica_ports = {f"catalog-{n}": free_port() for n in range(2, scenario.catalog_replicas + 1)}
        # ipv4: with several addresses: the channel's round_robin spreads calls over every replica.
        addresses = [mesh.address("catalog"), *(f"127.0.0.1:{port}" for port in chaos.replica_ports.values())]
        mesh.env["CATALOG_ADDRESS"] = "ipv4:" + ",".join(addresses)


async def _start_replicas(chaos: Chaos, work: Path) -> None:
    """The other catalog replicas: the first one's settings on their own ports (and,
    for catalog-2, Redis through its proxy when the scenario put one there)."""
    for name, port in chaos.replica_ports.items():
        env = {**(chaos.mesh.services["catalog"].env or {}), "GRPC_PORT": str(port), "METRICS_PORT": str(free_port())}
        if proxy := chaos.proxies.get(f"redis@{name}"):
            env["REDIS_URL"] = f"redis://{proxy.address}/0"
        replica = ManagedProcess(name, [sys.executable, "-m", "catalog"], work / "mesh" / "logs" / f"{name}.log", env,
                                 die_with_parent=True)  # fmt: skip
        replica.start()
        chaos.replicas[name] = replica
    for port in chaos.replica_ports.values():
        await until_serving(port, limit=60)


async def until_serving(port: int, limit: float) -> None:
    """Wait until the gRPC server on ``port`` answers SERVING (TimeoutError after ``limit`` s)."""
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(is_serving, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing SERVING on {port} after {limit:.0f} s")
        await asyncio.sleep(0.1)


async def restock(mesh: LocalMesh) -> None:
    """Plenty of every load product, so a scenario's orders are never short of stock."""
    async with grpc.aio.insecure_channel(mesh.address("catalog")) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        for product in PRODUCTS:
            await stub.SetStock(catalog_pb2.SetStockRequest(product_id=product, stock=1_000_000))


async def start_load(
    target: str, *, rate: float, seconds: float, products: list[str], prefix: str = "chaos"
) -> asyncio.subprocess.Process:
    """``python -m loadgen``: PlaceOrder at ``rate`` for ``seconds``, each retried with its request_id."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "--target", target, "--rate", str(rate), "--seconds", str(seconds),
        "--products", ",".join(products), "--attempts", "8", "--timeout", "10", "--prefix", prefix,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish_load(load: asyncio.subprocess.Process) -> dict[str, Any]:
    """The load's summary (codes, order_ids, ...) once it has ended."""
    out, _ = await load.communicate()
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary


async def _recovered(chaos: Chaos, limit: float = 180) -> str:
    """Every process SERVING and a PlaceOrder answered; its order id."""
    deadline = time.monotonic() + limit
    ports = [endpoint.grpc_port for endpoint in chaos.mesh.endpoints] + list(chaos.replica_ports.values())
    await asyncio.gather(*(until_serving(port, limit) for port in ports))
    request = checkout_pb2.PlaceOrderRequest(
        request_id=uuid.uuid4().hex, user_id="chaos-probe", email="probe@example.com", address=HOME,
        credit_card=CARD, items=[common_pb2.LineItem(product_id=PRODUCTS[0], quantity=1)],
    )  # fmt: skip
    async with grpc.aio.insecure_channel(chaos.mesh.address("checkout")) as channel:
        stub = checkout_pb2_grpc.CheckoutServiceStub(channel)
        while True:
            try:
                return (await stub.PlaceOrder(request, timeout=5)).order_id
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)  # the same request_id: one order however many tries


async def books_when_quiet(mesh: LocalMesh, answered: list[str], limit: float = 240) -> Books:
    """Wait (up to ``limit`` s) until every acknowledged order is stored and no
    order is in a state a worker owes a step from, then count what is stored
    against what was acknowledged (a backlog of OrderPlaced events after an
    outage is not a loss until the limit says so)."""
    began = time.monotonic()
    engine = create_engine(mesh.audit_env()["ORDER_DATABASE_URLS"].split(",")[0], pool_size=1)
    try:
        while True:
            timed_out = time.monotonic() - began > limit
            async with reading(engine) as connection:
                books = await _books_if_quiet(connection, set(answered), timed_out=timed_out)
            if books is not None:
                return replace(books, quiet_s=time.monotonic() - began)
            await asyncio.sleep(1.0)
    finally:
        await engine.dispose()


async def _books_if_quiet(connection: AsyncConnection, answered: set[str], *, timed_out: bool) -> Books | None:
    rows = await connection.execute(select(orders.c.status, func.count()).group_by(orders.c.status))
    owed = {status: count for status, count in rows if status in OWED}
    if owed and not timed_out:
        return None  # every id is read only once nothing is owed: with a soak's orders each read is a full scan
    stored = set((await connection.execute(select(orders.c.order_id))).scalars())
    if answered - stored and not timed_out:
        return None
    duplicated = (await connection.execute(
        select(func.count()).select_from(select(orders.c.request_id).group_by(orders.c.request_id)
        .having(func.count() > 1).subquery()))).scalar_one()  # fmt: skip
    return Books(persisted=len(stored), lost=len(answered - stored), duplicated=int(duplicated), owed=owed, quiet_s=0.0)


async def audit_report(mesh: LocalMesh, answered: list[str], work: Path, *, settle: float) -> tuple[int, str]:
    """The global auditor's exit status and report (``python -m auditor``, as an
    operator runs it) on ``mesh``, with ``answered`` as the acknowledged order ids."""
    acknowledged = work / "acknowledged.txt"
    acknowledged.write_text("".join(f"{order_id}\n" for order_id in answered))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "auditor", "--acknowledged", str(acknowledged), "--settle", str(settle),
        env={**os.environ, **mesh.audit_env()}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output = (await process.communicate())[0].decode()
    return process.returncode or 0, output
