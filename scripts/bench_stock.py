"""make bench-stock: reservations through the gRPC API, Redis path vs SQL path.

Real processes on loopback: a redis-server, a MariaDB server, one catalog
process per run, and two load-generating client processes. Runs (a) one hot
product and (b) 1,000 products on each path, side by side in one run, and
prints throughput, p50/p99 latency and the Redis/SQL ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from catalog.models import metadata, products
from mesh.db import create_engine, create_schema
from mesh.local.procs import ManagedProcess, MariaDBServer, RedisServer, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "2"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))


async def seed(url: str, count: int) -> None:
    engine = create_engine(url)
    await create_schema(engine, metadata)
    rows = [
        {
            "id": f"bench-{i:04d}",
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


async def one_run(
    path: str, products_count: int, mariadb: MariaDBServer, redis: RedisServer, work: Path
) -> dict[str, float]:
    database = f"bench_{path}_{products_count}_{int(time.time() * 1000) % 10**8}"
    mariadb.create_database(database)
    await seed(mariadb.url(database), 1000)
    port = free_port()
    env = {
        **os.environ,
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "METRICS_PORT": "0",
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
    }
    server = ManagedProcess("catalog", [sys.executable, "-m", "catalog"], work / f"catalog-{database}.log", env)
    server.start()
    try:
        wait_until(lambda: port_open(port), 60, "catalog to listen")
        clients = [
            await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "scripts/bench_client.py"), str(port), str(SECONDS), str(CONCURRENCY),
                str(products_count), f"c{n}", stdout=asyncio.subprocess.PIPE,
            )
            for n in range(CLIENTS)
        ]  # fmt: skip
        results = [json.loads((await c.communicate())[0]) for c in clients]
    finally:
        server.stop()
    latencies = sorted(ms for r in results for ms in r["latencies_ms"])
    count = len(latencies)
    return {
        "rps": count / SECONDS,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[int(count * 0.99) - 1] if count >= 100 else float("nan"),
        "errors": float(sum(r["errors"] for r in results)),
    }


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-stock-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis", appendonly=True).start()
        mariadb = MariaDBServer(work / "mariadb").start()
        try:
            table: dict[tuple[str, str], dict[str, float]] = {}
            for label, count in (("hot product", 1), ("1,000 products", 1000)):
                for path in ("redis", "sql"):
                    table[(label, path)] = await one_run(path, count, mariadb, redis, work)
                    print(f"  measured {label} / {path}", file=sys.stderr, flush=True)
        finally:
            mariadb.stop()
            redis.stop()
    print(f"\nReserveStock through gRPC, one catalog process, {CLIENTS} client processes x {CONCURRENCY} in flight, "
          f"{SECONDS:.0f} s per run, {os.cpu_count()} cores; SQL = MariaDB")  # fmt: skip
    print(f"{'scenario':<16} {'path':<6} {'res/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for (label, path), r in table.items():
        print(f"{label:<16} {path:<6} {r['rps']:>9.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['errors']:>7.0f}")
    for label in ("hot product", "1,000 products"):
        ratio = table[(label, "redis")]["rps"] / max(table[(label, "sql")]["rps"], 1e-9)
        print(f"ratio redis/sql, {label}: {ratio:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
