"""make bench-forwarder: the RocketMQ transport's speed, measured side by side in one run.

1. Redis outbox stream -> RocketMQ topic through one Forwarder (the handler of a
   StreamConsumer), three ways: one by one (a stream read and a SendMessage per
   event); batches of BENCH_BATCH with one message per SendMessage call, all of
   a batch's calls at once (FORWARDER_SEND_BATCH=1, the way before RocketMQ
   5.5.0); and batches with several messages per call (FORWARDER_SEND_BATCH,
   each value of BENCH_SEND_BATCHES). Only the relay is timed: from the first
   read until the group has nothing pending or undelivered. The broker's JIT is
   warmed first, on a topic of its own, both ways: a long-running broker is
   warm, and the first ~10,000 sends of a fresh one cost it several times as
   much CPU.
2. RocketMQ -> SQL: a RocketConsumer feeding the order context's PlacedOrders into
   SQLite. Every OrderPlaced relayed in 1 must end up as exactly one order row.
3. The broker's memory: RSS of the RocketMQ JVMs, sampled in a thread throughout.

A real redis-server and a real RocketMQ 5 broker (name server + proxy JVMs) on
loopback, under a temporary directory; both are stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import benchreport
import redis.asyncio as redis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.events import order_placed
from common.order_ids import mint
from mesh.bus import encode_fields
from mesh.bus.dead_letters import SqlDeadLetters
from mesh.bus.metrics import BusMetrics
from mesh.bus.redis_streams import ConsumerConfig, StreamConsumer
from mesh.bus.rocketmq import Forwarder, RocketClient, RocketConsumer, RocketConsumerConfig
from mesh.clock import utc_now
from mesh.db import create_engine, create_schema, reading
from mesh.local.procs import RedisServer
from mesh.local.rocketmq import RocketMQServer
from mesh.money import Money
from mesh.settings import ServiceSettings
from order.events import status_changed
from order.handlers import PlacedOrders
from order.models import dead_letters, metadata, orders
from order.shards import Shards
from order.store import OrderStore
from ordermesh.common.v1 import common_pb2

EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
SINGLE_EVENTS = int(os.environ.get("BENCH_SINGLE_EVENTS", "2000"))  # one by one is slow: fewer suffice
WARMUP_EVENTS = int(os.environ.get("BENCH_WARMUP_EVENTS", "40000"))  # each way
BATCH = int(os.environ.get("BENCH_BATCH", "200"))
# Messages per SendMessage call to measure; the first is the one judged against the targets.
DEFAULT_SEND_BATCH = int(ServiceSettings.model_fields["forwarder_send_batch"].default)
SEND_BATCHES = [int(n) for n in os.environ.get("BENCH_SEND_BATCHES", str(DEFAULT_SEND_BATCH)).split(",")]
CONSUMER_BATCH = int(os.environ.get("BENCH_CONSUMER_BATCH", "32"))  # the proxy's maximum per receive
CONSUME_TIMEOUT = float(os.environ.get("BENCH_CONSUME_TIMEOUT", "300"))
TARGET = 5000  # events/s relayed by one forwarder
RATIO_TARGET = 20.0  # times one by one
TOPIC, WARMUP_TOPIC, GROUP = "ordermesh-order-placed", "bench-warmup", "ordermesh-order"
PRODUCT = "sku-1008"
MIB = 1024 * 1024


# --- broker memory ------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """VmRSS of one process; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler:
    """The summed RSS of the broker's JVMs every ``interval`` s, from a thread so that
    a busy event loop does not thin out the samples."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.25) -> None:
        self.interval = interval
        self._pids = pids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.samples: list[tuple[float, int]] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        total = sum(rss_bytes(pid) for pid in self._pids())
        self.samples.append((time.perf_counter(), total))
        return total

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def peak(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((rss for at, rss in self.samples if since <= at <= until), default=0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (all its threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass(frozen=True)
class Cpu:
    """Where the CPU of a measurement went: this process, the broker's JVMs, redis-server."""

    broker_pids: Callable[[], list[int]]
    redis_pid: Callable[[], int]

    def now(self) -> tuple[float, float, float]:
        broker = sum(cpu_seconds(pid) for pid in self.broker_pids())
        return time.process_time(), broker, cpu_seconds(self.redis_pid())


# --- events -------------------------------------------------------------------------------


def placed_fields(count: int, tracer: trace.Tracer) -> list[dict[str, str | bytes]]:
    """Stream fields of ``count`` OrderPlaced envelopes as the catalog appends them,
    each with the trace context of a producing span, as in production."""
    now = datetime.now(UTC)
    price = Money.of("USD", 9, 500_000_000)
    shipping = Money.of("USD", 6, 490_000_000)
    address = common_pb2.Address(
        street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701"
    )
    fields = []
    for n in range(count):
        user_id = f"bench-{n % 50}"
        draft = common_pb2.OrderDraft(
            request_id=uuid.uuid4().hex,
            user_id=user_id,
            address=address,
            email="bench@example.com",
            shipping_cost=shipping.to_proto(),
        )
        items = [common_pb2.OrderItem(product_id=PRODUCT, quantity=2, unit_price=price.to_proto())]
        with tracer.start_as_current_span("reserve"):
            envelope = order_placed(mint(user_id, 1), draft, items, price.times(2) + shipping, now)
        fields.append(encode_fields(envelope))
    return fields


async def append(client: redis.Redis, stream: str, fields: list[dict[str, str | bytes]]) -> None:
    for i in range(0, len(fields), 1000):
        pipe = client.pipeline(transaction=False)
        for entry in fields[i : i + 1000]:
            pipe.xadd(stream, cast(Any, entry))
        await pipe.execute()


# --- 1. Redis -> RocketMQ -----------------------------------------------------------------


@dataclass
class Mode:
    """One way of relaying, measured: ``per_call`` messages per SendMessage, ``batch`` entries per read."""

    name: str
    events: int
    batch: int
    per_call: int
    rate: float = 0.0
    calls: float = 0.0
    fallbacks: float = 0.0
    cpu_us: tuple[float, float, float] = (0.0, 0.0, 0.0)  # per event: this process, broker, redis


@dataclass
class Relay:
    client: redis.Redis
    rocket: RocketClient
    dead: SqlDeadLetters
    tracer: trace.Tracer
    cpu: Cpu
    producer: Any = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    async def open(self) -> None:
        self.producer = await self.rocket.producer([TOPIC, WARMUP_TOPIC])

    async def close(self) -> None:
        if self.producer is not None:
            await self.rocket.blocking(self.producer.shutdown)

    async def run(self, stream: str, topic: str, mode: Mode) -> Mode:
        """Relay ``mode.events`` fresh OrderPlaced events through one forwarder; its events/s,
        SendMessage calls and events sent again one per call."""
        metrics = BusMetrics.of(self.registry)
        forwarder = Forwarder(
            self.rocket,
            self.producer,
            topic,
            per_call=mode.per_call,
            calls=metrics.send_calls.labels(stream),
            fallbacks=metrics.fallbacks.labels(stream),
        )
        fields = placed_fields(mode.events, self.tracer)
        await append(self.client, stream, fields)
        consumer = StreamConsumer(
            self.client, stream, "forwarder", forwarder, self.dead, tracer=self.tracer,
            config=ConsumerConfig(batch_size=mode.batch, block_ms=10),
        )  # fmt: skip
        await consumer.ensure_group()
        cpu_before = self.cpu.now()
        started = time.perf_counter()
        relayed = await consumer.run_until_idle()
        elapsed = time.perf_counter() - started
        cpu_after = self.cpu.now()
        python, broker, redis_cpu = ((b - a) * 1e6 / mode.events for a, b in zip(cpu_before, cpu_after, strict=True))
        mode.cpu_us = (python, broker, redis_cpu)
        (group,) = await self.client.xinfo_groups(stream)
        pending, undelivered = int(group["pending"]), int(group["lag"] or 0)
        if relayed != mode.events or pending or undelivered:
            fail(f"{stream}: relayed {relayed} of {mode.events}; {pending} still pending, {undelivered} undelivered")
        mode.rate = mode.events / elapsed

        def counted(name: str) -> float:
            return self.registry.get_sample_value(f"ordermesh_forwarder_{name}_total", {"stream": stream}) or 0.0

        mode.calls, mode.fallbacks = counted("send_calls"), counted("fallback_events")
        return mode


# --- 2. RocketMQ -> SQL -------------------------------------------------------------------


async def count_rows(engine: AsyncEngine, table: Table) -> int:
    async with reading(engine) as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def consume(consumer: RocketConsumer, engine: AsyncEngine, expected: int) -> tuple[float, int, int]:
    """Poll until every expected row exists, or the timeout: (seconds, messages, rows)."""
    started = time.perf_counter()
    deadline = started + CONSUME_TIMEOUT
    delivered = 0
    while time.perf_counter() < deadline:
        delivered += await consumer.poll()
        if delivered >= expected and await count_rows(engine, orders) >= expected:
            break
    return time.perf_counter() - started, delivered, await count_rows(engine, orders)


# --- the run ------------------------------------------------------------------------------


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


async def measure(broker: RocketMQServer, redis_server: RedisServer, work: Path, rss: RssSampler) -> dict[str, Any]:
    tracer = TracerProvider().get_tracer("bench-forwarder")
    client = redis.Redis.from_url(redis_server.url)
    engine = create_engine(f"sqlite+aiosqlite:///{work / 'order-0.db'}")
    await create_schema(engine, metadata)
    rocket = RocketClient(broker.grpc_endpoint)
    redis_process = redis_server.process
    assert redis_process is not None and redis_process.proc is not None
    cpu = Cpu(lambda: broker.pids, lambda: cast(Any, redis_process.proc).pid)
    relay = Relay(client, rocket, SqlDeadLetters(engine, dead_letters), tracer, cpu)
    result: dict[str, Any] = {"load_before": load()}
    try:
        await relay.open()
        for per_call in sorted({1, SEND_BATCHES[0]}):
            warm = await relay.run(f"outbox:warmup-{per_call}", WARMUP_TOPIC, Mode("", WARMUP_EVENTS, BATCH, per_call))
            result[f"warmup-{per_call}"] = warm.rate
            progress(f"warmed the broker up with {WARMUP_EVENTS} events, {per_call} per call ({warm.rate:.0f}/s)")
        relay_started = time.perf_counter()
        modes = [
            Mode("one by one", SINGLE_EVENTS, 1, 1),
            Mode(f"batches of {BATCH}, 1 per call", EVENTS, BATCH, 1),
            *(Mode(f"batches of {BATCH}, {n} per call", EVENTS, BATCH, n) for n in SEND_BATCHES),
        ]
        for n, mode in enumerate(modes):
            await relay.run(f"outbox:mode-{n}", TOPIC, mode)
            progress(f"relayed {mode.events} events: {mode.name} ({mode.rate:.0f}/s)")
        result["modes"] = modes
        result["relay_rss"] = rss.peak(relay_started)

        sent = sum(mode.events for mode in modes)
        handler = PlacedOrders(Shards([OrderStore(engine, status_changed)]), utc_now)
        consumer = RocketConsumer(
            rocket, GROUP, {TOPIC: handler}, RocketConsumerConfig(batch_size=CONSUMER_BATCH), tracer
        )
        await consumer.open()
        consume_started, cpu_before = time.perf_counter(), cpu.now()
        try:
            result["consume_s"], result["delivered"], result["rows"] = await consume(consumer, engine, sent)
        finally:
            await consumer.stopped()
        rows = max(result["rows"], 1)
        result["consume_cpu_us"] = tuple((b - a) * 1e6 / rows for a, b in zip(cpu_before, cpu.now(), strict=True))
        result["consume_rss"] = rss.peak(consume_started)
        progress(f"consumed {result['delivered']} messages into {result['rows']} rows")
        result["sent"] = sent
        result["dead"] = await count_rows(engine, dead_letters)
        result["load_after"] = load()
    finally:
        await relay.close()
        await rocket.close()
        await client.aclose()
        await engine.dispose()
    return result


def relay_lines(result: dict[str, Any]) -> list[str]:
    modes: list[Mode] = result["modes"]
    single, old_way, multi = modes[0], modes[1], modes[2]
    lines = [
        f"Redis stream -> RocketMQ topic, one Forwarder ({os.cpu_count()} cores shared by every process;"
        f" load average {result['load_before']} before, {result['load_after']} after)",
        f"{'mode':<30} {'events':>7} {'calls':>7} {'resent':>7} {'events/s':>9} {'vs one by one':>14}"
        f"   CPU µs/event: {'python':>6} {'broker':>6} {'redis':>6}",
    ]
    for mode in modes:
        python, jvm, redis_cpu = mode.cpu_us
        lines.append(
            f"{mode.name:<30} {mode.events:>7} {mode.calls:>7.0f} {mode.fallbacks:>7.0f} {mode.rate:>9.0f}"
            f" {mode.rate / single.rate:>13.1f}x {'':>16}{python:>6.0f} {jvm:>6.0f} {redis_cpu:>6.0f}"
        )
    met = multi.rate >= TARGET and multi.rate / single.rate >= RATIO_TARGET
    warm = ", ".join(f"{key.removeprefix('warmup-')} per call {value:.0f}/s" for key, value in result.items()
                     if key.startswith("warmup-"))  # fmt: skip
    return [
        *lines,
        "(resent: events sent again one per call after their call of several was not stored whole;",
        " CPU, user + system: python: this process, the forwarder and its stream consumer; broker: the",
        " RocketMQ JVMs, name server + proxy with the broker in it; redis: redis-server)",
        f"{multi.per_call} per call: {multi.rate:.0f}/s, {multi.rate / single.rate:.1f}x one by one,"
        f" {multi.rate / old_way.rate:.1f}x one per call; targets {TARGET}/s and {RATIO_TARGET:.0f}x:"
        f" {'met' if met else 'MISSED'}",
        f"broker CPU per event relayed: {multi.cpu_us[1]:.0f} µs at {multi.per_call} per call,"
        f" {old_way.cpu_us[1]:.0f} µs at 1 per call, {single.cpu_us[1]:.0f} µs one by one (a warm broker)",
        f"(a fresh broker, first {WARMUP_EVENTS} events each way: {warm})",
    ]


def consume_lines(result: dict[str, Any], relay_rate: float) -> list[str]:
    rows_rate = result["rows"] / result["consume_s"]
    python, broker, redis_cpu = result["consume_cpu_us"]
    return [
        f"RocketMQ -> SQLite: RocketConsumer (receives of {CONSUMER_BATCH}) into order.handlers.PlacedOrders",
        f"{result['rows']} rows from {result['delivered']} messages in {result['consume_s']:.1f} s:"
        f" {rows_rate:.0f} rows/s; dead letters: {result['dead']}",
        f"CPU per row, µs: python {python:.0f} (this process: the consumer and SQLite),"
        f" broker {broker:.0f}, redis {redis_cpu:.0f}",
        f"relay/consume ratio: {relay_rate / rows_rate:.1f}x",
    ]


def rss_lines(result: dict[str, Any], rss: RssSampler, idle_rss: int, end_rss: dict[str, int]) -> list[str]:
    return [
        f"RocketMQ JVMs' RSS (name server + proxy with the broker), sampled every {rss.interval} s",
        f"after start {idle_rss / MIB:.0f} MiB; peak while relaying {result['relay_rss'] / MIB:.0f} MiB,"
        f" while consuming {result['consume_rss'] / MIB:.0f} MiB; peak {rss.peak() / MIB:.0f} MiB;"
        f" at end {sum(end_rss.values()) / MIB:.0f} MiB ("
        + ", ".join(f"{name} {value / MIB:.0f}" for name, value in end_rss.items())
        + ")",
    ]


def report(result: dict[str, Any], rss: RssSampler, idle_rss: int, end_rss: dict[str, int]) -> tuple[str, bool]:
    """The report's text, and whether every OrderPlaced sent became exactly one row."""
    whole = result["rows"] == result["sent"]
    check = (
        f"rows == OrderPlaced events sent ({result['sent']}): OK"
        if whole
        else f"FAIL: {result['rows']} order rows for {result['sent']} OrderPlaced events sent"
    )
    sections = [
        relay_lines(result),
        consume_lines(result, result["modes"][2].rate),
        [*rss_lines(result, rss, idle_rss, end_rss), check],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections), whole


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-forwarder-") as tmp:
        work = Path(tmp)
        redis_server = RedisServer(work / "redis").start()
        broker = RocketMQServer(work / "rocketmq", {TOPIC: "NORMAL", WARMUP_TOPIC: "NORMAL"}, {GROUP: 3})
        rss = RssSampler(lambda: broker.pids)
        try:
            started = time.perf_counter()
            broker.start()
            progress(f"RocketMQ up in {time.perf_counter() - started:.0f} s")
            idle_rss = rss.sample()
            rss.start()
            result = await measure(broker, redis_server, work, rss)
            rss.stop()
            rss.sample()
            jvms = {"name server": broker.namesrv, "proxy": broker.proxy}
            end_rss = {name: rss_bytes(p.proc.pid) for name, p in jvms.items() if p is not None and p.proc is not None}
        finally:
            rss.stop()
            broker.stop()
            redis_server.stop()
    text, whole = report(result, rss, idle_rss, end_rss)
    print("\n" + text)
    benchreport.save("forwarder", "The RocketMQ transport: Redis -> RocketMQ relay and RocketMQ -> SQL", text)
    if not whole:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
