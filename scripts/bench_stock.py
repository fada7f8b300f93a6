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
  process on this machine, which the Redis path is reported against;
- the hot product with ``WORKERS=2`` (two catalog processes on one port).

Every run also reports the server's CPU time per reservation (the process and
its workers, from /proc). ``BENCH_RUNS=hot,empty`` picks runs by key (see RUNS);
``BENCH_PROFILE=1`` records the hot-product run with py-spy and prints the
functions that took the most CPU (the flame graph is written under
var/reports/).
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

import benchreport
import profiling
from sqlalchemy import insert

from catalog.models import metadata, products
from mesh.db import create_engine, create_schema
from mesh.local.procs import ManagedProcess, MariaDBServer, RedisServer, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "4"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
GHZ = str(ROOT / ".tools/bin/ghz")
PROFILE = os.environ.get("BENCH_PROFILE", "") not in ("", "0", "false")
PROFILE_OUTPUT = ROOT / "var/reports/bench-stock-hot.txt"


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
    if path == "none":  # the empty handler
        argv = [sys.executable, str(ROOT / "scripts/bare_catalog.py"), str(port)]
        return await measure(ManagedProcess("empty", argv, work / "empty.log", dict(os.environ)), port, 1, database)
    profile = PROFILE and path == "redis" and products_count == 1 and not extra_env
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
    return await measure(server, port, products_count, database, metrics_port, profile=profile)


async def measure(
    server: ManagedProcess,
    port: int,
    products_count: int,
    order_prefix: str,
    metrics_port: int | None = None,
    *,
    profile: bool = False,
) -> dict[str, float]:
    """ghz against ``server`` for SECONDS: fresh order ids, one or many products."""
    server.start()
    try:
        wait_until(lambda: port_open(port), 60, "catalog to listen")
        assert server.proc is not None
        await asyncio.sleep(1.0)  # workers (WORKERS=N) are up and listening too
        spy = profiling.start(server.proc.pid, PROFILE_OUTPUT) if profile else None
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
        cpu_before, busy_before, began = profiling.tree_cpu_seconds(server.proc.pid), machine_busy(), time.time()
        report = json.loads((await ghz.communicate())[0])
        cpu = profiling.tree_cpu_seconds(server.proc.pid) - cpu_before
        busy = (machine_busy() - busy_before) / (time.time() - began)
        refills = refill_count(metrics_port) if metrics_port else 0.0
        if spy is not None:
            await asyncio.to_thread(profiling.stop, spy)
    finally:
        server.stop()
    percentiles = {p["percentage"]: p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
    codes = report.get("statusCodeDistribution", {})
    ok = codes.get("OK", 0)
    return {
        "rps": ok / (report["total"] / 1e9),
        # ghz's count covers the same window as the CPU reading (give or take its start-up).
        "cpu_ms": cpu * 1000 / max(ok, 1),
        "busy": busy,  # cores of the whole machine in use: the server, ghz, Redis, MariaDB
        "p50": percentiles.get(50, float("nan")),
        "p99": percentiles.get(99, float("nan")),
        # Calls still in flight when the run ends are cut off by ghz (UNAVAILABLE): not errors.
        "errors": float(sum(n for code, n in codes.items() if code not in ("OK", "Unavailable"))),
        "refills": refills,
    }


machine_busy = profiling.machine_busy_seconds


def refill_count(metrics_port: int) -> float:
    """Refills the catalog made (background and inline), from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("ordermesh_stock_refills_total")
    )


# Runs by key (BENCH_RUNS picks some): label, path, products, extra settings.
RUNS: dict[str, tuple[str, str, int, dict[str, str] | None]] = {
    "hot": ("hot product", "redis", 1, None),
    "workers": ("hot, WORKERS=2", "redis", 1, {"WORKERS": "2"}),
    "alloc": ("hot, 1 alloc.", "redis", 1, ONE_ALLOCATION),
    "redis-py": ("hot, redis-py", "redis", 1, {"REDIS_PIPE": "false"}),
    "hot-sql": ("hot product", "sql", 1, None),
    "many": ("1,000 products", "redis", 1000, None),
    "many-sql": ("1,000 products", "sql", 1000, None),
    "empty": ("empty handler", "none", 1, None),
}
SELECTED = set(filter(None, os.environ.get("BENCH_RUNS", ",".join(RUNS)).split(",")))


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-stock-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis", appendonly=True).start()
        mariadb = MariaDBServer(work / "mariadb").start()
        try:
            table: dict[tuple[str, str], dict[str, float]] = {}
            for key, (label, path, count, extra) in RUNS.items():
                if key in SELECTED:
                    table[(label, path)] = await one_run(path, count, mariadb, redis, work, extra)
                    print(f"  measured {label} / {path}", file=sys.stderr, flush=True)
        finally:
            mariadb.stop()
            redis.stop()
    text = report(table)
    print("\n" + text)
    if set(RUNS) == SELECTED:  # a partial run (BENCH_RUNS) is not the document's figure
        benchreport.save("stock", "Stock reservation: the Redis path against the SQL path", text)
    if PROFILE and PROFILE_OUTPUT.exists():
        print("\n" + profiling.summary(PROFILE_OUTPUT, "py-spy, the hot product on the Redis path"))


def report(table: dict[tuple[str, str], dict[str, float]]) -> str:
    lines: list[str] = []
    say = lines.append
    say(
        f"ReserveStock through gRPC: one catalog process; ghz with {CONCURRENCY} calls in flight over "
        f"{CONNECTIONS} connections; {SECONDS:.0f} s per run; {os.cpu_count()} cores; SQL path on MariaDB"
    )
    heading = f"{'res/s':>9} {'CPU ms':>7} {'busy':>5} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'refills':>8}"
    say(f"{'scenario':<16} {'path':<6} {heading}")
    for (label, path), r in table.items():
        say(
            f"{label:<16} {path:<6} {r['rps']:>9.0f} {r['cpu_ms']:>7.3f} {r['busy']:>5.2f} "
            f"{r['p50']:>8.1f} {r['p99']:>8.1f} {r['errors']:>7.0f} {r.get('refills', 0):>8.0f}"
        )
    say(
        "CPU ms: the server's CPU time (all its processes) per answered call; busy: cores of the whole "
        f"machine in use during the run ({os.cpu_count()} here): the server, ghz, Redis and MariaDB share them"
    )
    hot = table.get(("hot product", "redis"))
    empty = table.get(("empty handler", "none"))
    if hot and empty:
        say(
            f"the empty handler is one grpc.aio process answering ReserveStock with no work at all: the ceiling "
            f"for any Python catalog process here; the Redis path on the hot product (refills active) reaches "
            f"{hot['rps'] / empty['rps']:.0%} of it (target: at least 60%), at {hot['cpu_ms']:.3f} ms of CPU per "
            f"reservation (target: at most 0.3) against {empty['cpu_ms']:.3f} ms for the empty handler"
        )
    workers = table.get(("hot, WORKERS=2", "redis"))
    if hot and workers:
        say(
            f"WORKERS=2 on the hot product: {workers['rps'] / hot['rps']:.2f}x one worker (target: at least 1.6x); "
            f"the machine was {workers['busy']:.2f} of {os.cpu_count()} cores busy: a second worker can only use "
            "what ghz, Redis and the first worker leave"
        )
    once = table.get(("hot, 1 alloc.", "redis"))
    if hot and once:
        say(
            f"refills on the hot path: {hot['rps']:.0f}/s with refills vs {once['rps']:.0f}/s with one allocation: "
            f"{1 - hot['rps'] / once['rps']:+.1%} of throughput (target: at most 5%; runs vary by several % here)"
        )
    for label in ("hot product", "1,000 products"):
        if (label, "redis") in table and (label, "sql") in table:
            ratio = table[(label, "redis")]["rps"] / max(table[(label, "sql")]["rps"], 1e-9)
            say(f"ratio redis/sql, {label}: {ratio:.1f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
