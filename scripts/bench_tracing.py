"""What tracing costs the reservation hot path: CPU per ReserveStock call.

First, in this process, the client CPU of one EVALSHA (a script with the
arguments of reserve.lua: an OrderPlaced-sized envelope) made inside a server
span, as the catalog makes it: plain, through the Redis instrumentation
(mesh.storage_spans), and inside the OrderPlaced PRODUCER span; each in an
unsampled trace (what 99% of calls are at a 1% ratio) and a sampled one.

Then one catalog process on the Redis path (one hot product, one allocation of all
its stock at the first sale, so no refill runs during the measurement), driven
by ghz at a fixed request rate, so every run does the same work per second and
only the catalog's own CPU per call differs. The catalog's CPU time (user +
system, from /proc) over the measured window, divided by the calls answered OK.

Runs, interleaved and repeated (BENCH_ROUNDS), the median reported:
- OTEL_STORAGE_SPANS false / true (the SQL and Redis CLIENT spans), each at
  OTEL_SAMPLING_RATIO 0.01 (production-like) and 1.0 (every span recorded; no
  exporter either way: recording is measured, not shipping);
- with BENCH_TREES=<label>=<path>,... the catalog of other trees too
  (``python -m catalog`` run from there, storage spans off), e.g. a checkout
  of the commit before tracing changed, to see the whole difference.

    python scripts/bench_tracing.py            # BENCH_RPS=800 BENCH_SECONDS=10 BENCH_ROUNDS=3
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
from typing import Any

import benchreport
from sqlalchemy import insert

from catalog.models import metadata, products
from mesh.db import create_engine, create_schema
from mesh.local.procs import ManagedProcess, RedisServer, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parent.parent
GHZ = str(ROOT / ".tools/bin/ghz")
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
RPS = int(os.environ.get("BENCH_RPS", "800"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TREES = [tuple(item.split("=", 1)) for item in os.environ.get("BENCH_TREES", "").split(",") if "=" in item]
TICKS = os.sysconf("SC_CLK_TCK")


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


async def seed(url: str) -> None:
    engine = create_engine(url)
    await create_schema(engine, metadata)
    async with engine.begin() as connection:
        await connection.execute(
            insert(products),
            [
                {
                    "id": "bench-0",
                    "name": "Bench",
                    "description": "",
                    "currency": "USD",
                    "price_units": 10,
                    "price_nanos": 0,
                    "stock": 1_000_000_000,
                    "categories": "[]",
                }
            ],
        )
    await engine.dispose()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def ghz(port: int, prefix: str, seconds: float, rps: int) -> int:
    """Calls answered OK: fresh order ids, one line of the hot product each."""
    data = json.dumps(
        {
            "order_id": prefix + "-{{.RequestNumber}}",
            "items": [{"product_id": "bench-0", "quantity": 1}],
            "draft": {"user_id": "u{{.WorkerID}}"},
        }
    )
    process = await asyncio.create_subprocess_exec(
        GHZ, "--insecure", "--import-paths", str(ROOT / "protos"),
        "--proto", str(ROOT / "protos/ordermesh/catalog/v1/catalog.proto"),
        "--call", "ordermesh.catalog.v1.CatalogService/ReserveStock", "-d", data,
        "-c", "32", "--connections", "2", "--rps", str(rps), "-z", f"{seconds}s",
        "-O", "json", f"127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    report = json.loads((await process.communicate())[0])
    return int(report.get("statusCodeDistribution", {}).get("OK", 0))


async def one_run(label: str, tree: Path, env_extra: dict[str, str], redis: RedisServer, work: Path) -> float:
    """CPU microseconds per OK call of one catalog process."""
    name = f"b{int(time.time() * 1000) % 10**9}"
    url = f"sqlite+aiosqlite:///{work / name}.db"
    await seed(url)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "METRICS_PORT": "0",
        "DATABASE_URL": url,
        "REDIS_URL": redis.url,
        "CATALOG_SEED": "false",
        "CATALOG_KEY_PREFIX": name,
        "ORDER_STREAM": f"{name}:orders",
        "STOCK_MIN_REFILL": str(2 * 10**9),  # one allocation of everything: no refill while measured
        "FLUSHER_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        **env_extra,
    }
    server = ManagedProcess(label, [sys.executable, "-m", "catalog"], work / f"{name}.log", env)
    server.start()
    try:
        wait_until(lambda: port_open(port), 60, "catalog to listen")
        assert server.proc is not None
        await ghz(port, f"{name}-warm", 2, RPS)  # connections, the script load, the first allocation
        before = cpu_seconds(server.proc.pid)
        ok = await ghz(port, name, SECONDS, RPS)
        used = cpu_seconds(server.proc.pid) - before
    finally:
        server.stop()
    await redis_trim(redis, name)
    return used / max(ok, 1) * 1e6


async def redis_trim(redis: RedisServer, prefix: str) -> None:
    """Drop the run's stream and journal: later runs start from an equally small Redis."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis.url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()


async def micro(redis: RedisServer, calls: int = 20_000) -> list[str]:
    """The client CPU of one EVALSHA per case: the report's lines."""
    import redis.asyncio as aioredis
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    from mesh.bus.tracing import REDIS, publish_attributes, publishing
    from mesh.storage_spans import InTraceOnly

    sampled, unsampled = TracerProvider(sampler=ALWAYS_ON), TracerProvider(sampler=ALWAYS_OFF)
    plain, traced = aioredis.Redis.from_url(redis.url), aioredis.Redis.from_url(redis.url)
    RedisInstrumentor.instrument_client(traced, tracer_provider=InTraceOnly(sampled))
    keys = ["epoch", "reserved", "released", "journal", "orders", "stock"]
    args: list[Any] = ["epoch", "o0-19ad0b8c7e1a4f03c2d9b6e", 604800, b"e" * 320, "sku-1004", 2]
    attributes = publish_attributes(REDIS, "events:order-placed")

    async def per_call(client: aioredis.Redis, provider: TracerProvider, producer: bool) -> float:
        script = client.register_script("return {'OK', ARGV[2]}")
        tracer = provider.get_tracer("bench")
        start = time.process_time()
        for _ in range(calls):
            with tracer.start_as_current_span("ReserveStock"):
                if producer:
                    with publishing(tracer, REDIS, "events:order-placed", attributes=attributes):
                        await script(keys=keys, args=args)
                else:
                    await script(keys=keys, args=args)
        return (time.process_time() - start) / calls * 1e6

    cases = [
        (f"{what}, {label}", client, provider, producer)
        for label, provider in (("unsampled", unsampled), ("sampled", sampled))
        for what, client, producer in (
            ("EVALSHA", plain, False),
            ("EVALSHA instrumented", traced, False),
            ("EVALSHA in PRODUCER span", plain, True),
        )
    ]
    results: dict[str, list[float]] = {name: [] for name, *_ in cases}
    try:
        for _ in range(ROUNDS):
            for name, client, provider, producer in cases:
                results[name].append(await per_call(client, provider, producer))
    finally:
        await plain.aclose()
        await traced.aclose()
    lines = [
        f"One EVALSHA in a server span, client CPU in this process, {calls} calls, median of {ROUNDS} rounds",
        f"{'case':<40} {'CPU µs/call':>12} {'runs':>24}",
    ]
    for name, values in results.items():
        runs = " ".join(f"{v:.1f}" for v in values)
        lines.append(f"{name:<40} {statistics.median(values):>12.1f} {runs:>24}")
    return lines


async def main() -> None:
    scenarios: list[tuple[str, Path, dict[str, str]]] = []
    for ratio in ("0.01", "1.0"):
        for tree_label, path in TREES:
            env = {"OTEL_SAMPLING_RATIO": ratio, "OTEL_STORAGE_SPANS": "false"}  # a tree without it ignores it
            scenarios.append((f"{tree_label}, sampling {ratio}", Path(path), env))
        for spans in ("false", "true"):
            scenarios.append(
                (
                    f"storage spans {spans:<5}, sampling {ratio}",
                    ROOT,
                    {"OTEL_SAMPLING_RATIO": ratio, "OTEL_STORAGE_SPANS": spans},
                )
            )
    results: dict[str, list[float]] = {label: [] for label, _, _ in scenarios}
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis").start()
        try:
            lines = await micro(redis)
            progress(f"measured one EVALSHA {ROUNDS} times per case")
            for round_ in range(ROUNDS):
                for label, tree, env in scenarios:
                    results[label].append(await one_run(label, tree, env, redis, work))
                    progress(f"round {round_ + 1}: {label}: {results[label][-1]:.0f} µs")
        finally:
            redis.stop()
    lines += [
        "",
        f"ReserveStock, Redis path, one hot product: catalog CPU per call at {RPS} calls/s for "
        f"{SECONDS:.0f} s, median of {ROUNDS} rounds; {os.cpu_count()} cores",
        f"{'scenario':<40} {'CPU µs/call':>12} {'runs':>24}",
    ]
    for label, values in results.items():
        runs = " ".join(f"{v:.0f}" for v in values)
        lines.append(f"{label:<40} {statistics.median(values):>12.0f} {runs:>24}")
    text = "\n".join(lines)
    print("\n" + text)
    benchreport.save("tracing", "What tracing costs ReserveStock", text)


if __name__ == "__main__":
    asyncio.run(main())
