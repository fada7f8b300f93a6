"""make profile: where each process of the local mesh spends its CPU under a steady order load.

Starts the embedded mesh (its own redis-server, SQLite, Redis Streams) in a
temporary folder, stocks the products, then places orders at PROFILE_RATE per
second for PROFILE_SECONDS with the open-loop load generator (python -m
loadgen) while py-spy samples every service. When the mesh is idle again it
prints, per service, its CPU time per answered order and the functions that
took most of it. The raw stacks stay under var/reports/profile/ (one file per
service) for flame graph tools.

PROFILE_SERVICES (comma-separated) picks the services sampled; all by default.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import grpc
import profiling
import redis.asyncio as redis

from launcher.mesh import LocalMesh, free_offset
from mesh.local.procs import RedisServer
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
RATE = float(os.environ.get("PROFILE_RATE", "100"))
SECONDS = float(os.environ.get("PROFILE_SECONDS", "20"))
SERVICES = [s for s in os.environ.get("PROFILE_SERVICES", "").split(",") if s]
PRODUCTS = ["sku-1004", "sku-1005", "sku-1008", "sku-1009"]
OUTPUT = ROOT / "var/reports/profile"


async def settle(redis_url: str, limit: float = 120) -> None:
    """Until every consumer group of every stream has read and acknowledged everything."""
    client = redis.Redis.from_url(redis_url)
    loop = asyncio.get_running_loop()
    deadline, quiet = loop.time() + limit, 0
    try:
        while quiet < 3 and loop.time() < deadline:
            busy = False
            async for key in client.scan_iter(_type="stream"):
                for group in await client.xinfo_groups(key):
                    busy = busy or bool(group["pending"]) or bool(group.get("lag"))
            quiet = 0 if busy else quiet + 1
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()


async def load(mesh: LocalMesh) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "--target", mesh.address("checkout"), "--rate", str(RATE),
        "--seconds", str(SECONDS), "--products", ",".join(PRODUCTS), "--prefix", "profile",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    summary: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    summary.pop("order_ids", None)
    return summary


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="profile-mesh-") as tmp:
        work = Path(tmp)
        redis_server = RedisServer(work / "redis", appendonly=True).start()
        mesh = LocalMesh(work / "mesh", offset=free_offset(), redis_url=redis_server.url)
        try:
            mesh.start(timeout=90)
            async with grpc.aio.insecure_channel(mesh.address("catalog")) as channel:
                stub = catalog_pb2_grpc.CatalogServiceStub(channel)
                for product in PRODUCTS:
                    await stub.SetStock(catalog_pb2.SetStockRequest(product_id=product, stock=10_000_000))
            pids = {n: p.proc.pid for n, p in mesh.services.items() if p.proc and (not SERVICES or n in SERVICES)}
            before = {name: profiling.tree_cpu_seconds(pid) for name, pid in pids.items()}
            spies = {name: profiling.start(pid, OUTPUT / f"{name}.txt", rate=100) for name, pid in pids.items()}
            summary = await load(mesh)
            await settle(redis_server.url)
            for spy in spies.values():
                profiling.stop(spy)
            after = {name: profiling.tree_cpu_seconds(pid) for name, pid in pids.items()}
        finally:
            mesh.stop()
            redis_server.stop()
    codes = summary.get("codes")
    answered = max(float(codes.get("OK", 0)) if isinstance(codes, dict) else 0.0, 1.0)
    print(f"\n{answered:.0f} orders answered at {RATE:.0f}/s for {SECONDS:.0f} s; load generator summary: {summary}")
    print("CPU per answered order (until the mesh was idle again), ms:")
    for name in sorted(pids, key=lambda n: before[n] - after[n]):
        print(f"  {name:<10} {(after[name] - before[name]) * 1000 / answered:6.2f}")
    for name in sorted(pids, key=lambda n: before[n] - after[n]):
        print("\n" + profiling.summary(OUTPUT / f"{name}.txt", f"py-spy, {name}", top=30))


if __name__ == "__main__":
    asyncio.run(main())
