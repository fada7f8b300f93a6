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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from launcher.mesh import LocalMesh, free_offset, is_serving
from mesh.local.procs import RedisServer
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2

PRODUCTS = ["sku-1004", "sku-1005", "sku-1008", "sku-1009"]
CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")


@dataclass
class Chaos:
    """What a scenario may break: the mesh's processes and its Redis."""

    mesh: LocalMesh
    redis: RedisServer

    def kill(self, context: str, signal_number: int) -> None:
        process = self.mesh.services[context]
        process.signal(signal_number)
        process.wait(30)
        process.stop()  # reaps it and closes its log

    def restart(self, context: str) -> None:
        self.mesh.services[context].start()


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str
    inject: Callable[[Chaos], Awaitable[None]]


@dataclass
class Row:
    scenario: str
    fault: str
    attempted: int
    answered: int
    failed: int
    retried: int
    recovered_s: float
    codes: dict[str, int]  # the final answer of every call
    verdict: str  # the auditor's last line: "clean", or what it found
    report: str  # the auditor's whole output

    @property
    def clean(self) -> bool:
        return self.verdict == "clean"

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
    def oversold(self) -> int:
        return self.violations("stock: SQL, Redis and journal agree", "stock: units reserved = units of live orders")

    @property
    def money_kept(self) -> int:
        return self.violations("money: every capture belongs to a live order")


# A dispatcher killed between claiming an order (SHIPPING) and recording SHIPPED
# leaves the claim to recover-shipping, which ships it again once the claim is
# SHIP_CLAIM_TIMEOUT_SECONDS old (120 by default): 10 here, so that recovery
# happens within the run and the auditor sees its result.
MESH_SETTINGS = {"SHIP_CLAIM_TIMEOUT_SECONDS": "10"}


async def run(scenario: Scenario, work: Path, *, rate: float, seconds: float) -> Row:
    redis = RedisServer(work / "redis", appendonly=True).start()
    mesh = LocalMesh(work / "mesh", offset=free_offset(), redis_url=redis.url, env=MESH_SETTINGS)
    try:
        mesh.start(timeout=90)
        await _restock(mesh)
        load = await _start_load(mesh, rate, seconds)
        await asyncio.sleep(seconds / 3)
        began = time.monotonic()
        await scenario.inject(Chaos(mesh, redis))
        probe = await _recovered(mesh)
        recovered = time.monotonic() - began
        summary = await _finish(load)
        answered = [*summary["order_ids"], probe]
        _, report = await audit_report(mesh, answered, work, settle=60)
    finally:
        mesh.stop()
        redis.stop()
    codes: dict[str, int] = summary["codes"]
    return Row(
        scenario.name,
        scenario.fault,
        attempted=int(summary["attempted"]),
        answered=codes.get("OK", 0),
        failed=int(summary["failed"]),
        retried=int(summary["retried"]),
        recovered_s=recovered,
        codes=codes,
        verdict=report.rstrip().splitlines()[-1] if report.strip() else "no report",
        report=report,
    )


async def _restock(mesh: LocalMesh) -> None:
    async with grpc.aio.insecure_channel(mesh.address("catalog")) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        for product in PRODUCTS:
            await stub.SetStock(catalog_pb2.SetStockRequest(product_id=product, stock=1_000_000))


async def _start_load(mesh: LocalMesh, rate: float, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "--target", mesh.address("checkout"), "--rate", str(rate),
        "--seconds", str(seconds), "--products", ",".join(PRODUCTS), "--attempts", "8", "--timeout", "10",
        "--prefix", "chaos", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _finish(load: asyncio.subprocess.Process) -> dict[str, Any]:
    out, _ = await load.communicate()
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary


async def _recovered(mesh: LocalMesh, limit: float = 120) -> str:
    """Every service SERVING and a PlaceOrder answered; its order id."""
    deadline = time.monotonic() + limit
    ports = [endpoint.grpc_port for endpoint in mesh.endpoints]
    while not all(await asyncio.gather(*(asyncio.to_thread(is_serving, port) for port in ports))):
        if time.monotonic() > deadline:
            raise TimeoutError("the mesh did not come back")
        await asyncio.sleep(0.2)
    request = checkout_pb2.PlaceOrderRequest(
        request_id=uuid.uuid4().hex, user_id="chaos-probe", email="probe@example.com", address=HOME,
        credit_card=CARD, items=[common_pb2.LineItem(product_id=PRODUCTS[0], quantity=1)],
    )  # fmt: skip
    async with grpc.aio.insecure_channel(mesh.address("checkout")) as channel:
        stub = checkout_pb2_grpc.CheckoutServiceStub(channel)
        while True:
            try:
                return (await stub.PlaceOrder(request, timeout=5)).order_id
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)  # the same request_id: one order however many tries


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
