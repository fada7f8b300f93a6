"""make bench-stock: reservations through the gRPC API, Redis path vs SQL path.

Real processes on loopback: a redis-server, a MariaDB server, one catalog
process per run, and ghz (a Go gRPC load generator, so the client spends
little of the two cores). Runs, side by side in one run:

- one hot product on the Redis path with refills active (the default quota
  settings; stock far larger than one refill, so refills go on all run long),
  and with one allocation of everything at the first sale (no refill after):
  what refills cost the hot path;
- the same product on the SQL path, selling unallocated stock;
- 1,000 products on each path;
- an empty grpc.aio server (no work at all): the ceiling of one Python gRPC
  process on this machine, which the Redis path is reported against.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sqlalchemy import insert

from catalog.models import metadata, products
from mesh.db import create_engine, create_schema
from mesh.local.procs import ManagedProcess, MariaDBServer, RedisServer, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "4"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
GHZ = str(ROOT / ".tools/bin/ghz")


async def seed(url: str, count: int) -> None:
    engine = create_engine(url)
    await create_schema(engine, metadata)
    rows = [
        {
            "id": f"bench-{i}",
            "name": f"Bench {i}",
            "description": "",
            "currency": "USD",
            "price_units": 10,
            "price_nanos": 0,
            "stock": 1_000_000_000,
            "categories": "[]",
        }
        for i in range(count)
    ]
    async with engine.begin() as connection:
        await connection.execute(insert(products), rows)
    await engine.dispose()


# One allocation of everything at the first sale: no refill during the run.
ONE_ALLOCATION = {"STOCK_MIN_REFILL": str(2 * 10**9)}


async def one_run(
    path: str,
    products_count: int,
    mariadb: MariaDBServer,
    redis: RedisServer,
    work: Path,
    extra_env: dict[str, str] | None = None,
) -> dict[str, float]:
    database = f"bench_{path}_{products_count}_{int(time.time() * 1000) % 10**8}"
    port = free_port()
    if path == "empty":
        argv = [sys.executable, str(ROOT / "scripts/bare_catalog.py"), str(port)]
        return await measure(ManagedProcess("empty", argv, work / "empty.log", dict(os.environ)), port, 1, database)
    metrics_port = free_port()
    mariadb.create_database(database)
    await seed(mariadb.url(database), 1000)
    env = {
        **os.environ,
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        "DATABASE_URL": mariadb.url(database),
        "REDIS_URL": redis.url,
        "CATALOG_SEED": "false",
        "CATALOG_KEY_PREFIX": database,
        "ORDER_STREAM": f"{database}:orders",
        "STOCK_PATH": "sql" if path == "sql" else "auto",
        "LOG_LEVEL": "WARNING",
        # Both paths pay the same tracing cost: a production-like 1% sample.
        "OTEL_SAMPLING_RATIO": "0.01",
        "MAX_CONCURRENT_RPCS": "4000",
        **(extra_env or {}),
    }
    server = ManagedProcess("catalog", [sys.executable, "-m", "catalog"], work / f"catalog-{database}.log", env)
    return await measure(server, port, products_count, database, metrics_port)


async def measure(
    server: ManagedProcess, port: int, products_count: int, order_prefix: str, metrics_port: int | None = None
) -> dict[str, float]:
    """ghz against ``server`` for SECONDS: fresh order ids, one or many products."""
    server.start()
    try:
        wait_until(lambda: port_open(port), 60, "catalog to listen")
        product = "bench-0" if products_count == 1 else "bench-{{randomInt 0 %d}}" % products_count  # noqa: UP031
        # ghz fills in the {{...}} templates per call: a fresh order id each time.
        data = json.dumps(
            {
                "order_id": order_prefix + "-{{.RequestNumber}}",
                "items": [{"product_id": product, "quantity": 1}],
                "draft": {"user_id": "u{{.WorkerID}}"},
            }
        )
        ghz = await asyncio.create_subprocess_exec(
            GHZ, "--insecure", "--import-paths", str(ROOT / "protos"),
            "--proto", str(ROOT / "protos/ordermesh/catalog/v1/catalog.proto"),
            "--call", "ordermesh.catalog.v1.CatalogService/ReserveStock", "-d", data,
            "-c", str(CONCURRENCY), "--connections", str(CONNECTIONS), "-z", f"{SECONDS}s",
            "-O", "json", f"127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        report = json.loads((await ghz.communicate())[0])
        refills = refill_count(metrics_port) if metrics_port else 0.0
    finally:
        server.stop()
    percentiles = {p["percentage"]: p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
    codes = report.get("statusCodeDistribution", {})
    ok = codes.get("OK", 0)
    return {
        "rps": ok / (report["total"] / 1e9),
        "p50": percentiles.get(50, float("nan")),
        "p99": percentiles.get(99, float("nan")),
        # Calls still in flight when the run ends are cut off by ghz (UNAVAILABLE): not errors.
        "errors": float(sum(n for code, n in codes.items() if code not in ("OK", "Unavailable"))),
        "refills": refills,
    }


def refill_count(metrics_port: int) -> float:
    """Refills the catalog made (background and inline), from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("ordermesh_stock_refills_total")
    )


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-stock-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis", appendonly=True).start()
        mariadb = MariaDBServer(work / "mariadb").start()
        try:
            table: dict[tuple[str, str], dict[str, float]] = {}
            runs = [
                ("hot product", "redis", 1, None),
                ("hot, 1 alloc.", "redis", 1, ONE_ALLOCATION),
                ("hot product", "sql", 1, None),
                ("1,000 products", "redis", 1000, None),
                ("1,000 products", "sql", 1000, None),
            ]
            for label, path, count, extra in runs:
                table[(label, path)] = await one_run(path, count, mariadb, redis, work, extra)
                print(f"  measured {label} / {path}", file=sys.stderr, flush=True)
            table[("empty handler", "none")] = await one_run("empty", 1, mariadb, redis, work)
        finally:
            mariadb.stop()
            redis.stop()
    print(
        f"\nReserveStock through gRPC: one catalog process; ghz with {CONCURRENCY} calls in flight over "
        f"{CONNECTIONS} connections; {SECONDS:.0f} s per run; {os.cpu_count()} cores; SQL path on MariaDB"
    )
    print(f"{'scenario':<16} {'path':<6} {'res/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'refills':>8}")
    for (label, path), r in table.items():
        print(
            f"{label:<16} {path:<6} {r['rps']:>9.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['errors']:>7.0f} "
            f"{r.get('refills', 0):>8.0f}"
        )
    empty = table[("empty handler", "none")]["rps"]
    print(
        f"the empty handler is one grpc.aio process answering ReserveStock with no work at all: the ceiling "
        f"for any Python catalog process here; the Redis path on the hot product (refills active) reaches "
        f"{table[('hot product', 'redis')]['rps'] / empty:.0%} of it"
    )
    refilled, once = table[("hot product", "redis")]["rps"], table[("hot, 1 alloc.", "redis")]["rps"]
    print(
        f"refills on the hot path: {refilled:.0f}/s with refills vs {once:.0f}/s with one allocation: "
        f"{1 - refilled / once:+.1%} of throughput (target: at most 5%; runs vary by several % here)"
    )
    for label in ("hot product", "1,000 products"):
        ratio = table[(label, "redis")]["rps"] / max(table[(label, "sql")]["rps"], 1e-9)
        print(f"ratio redis/sql, {label}: {ratio:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
