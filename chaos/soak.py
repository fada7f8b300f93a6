"""``python -m chaos.soak`` (``make soak MINUTES=10``): a long run under load and faults.

An embedded mesh of its own (redis-server with its append-only file and SQLite
under ``var/soak``, loopback only) takes k6's ``load`` scenario (PlaceOrder at a
constant arrival rate, ``loadtest/load.js`` through ``python -m loadtest``) at
``--rate`` orders/s for ``--minutes``. At every whole minute but the first and
the last, a fault picked at random (seeded: ``--seed`` or SOAK_SEED replays a
run) from the scenarios of ``chaos.scenarios`` this mesh can run (the embedded
profile, no proxy on a link, one catalog) is injected.

Measured along the way, every ``SAMPLE_SECONDS``:

- memory (RSS, and USS: the private pages, from /proc/PID/smaps_rollup) of
  every process of the mesh: the six contexts, the gateway and redis-server. A
  process a fault restarts is a new process with a life of its own: each
  life's growth is from its first sample after the warm-up to its last sample
  (the end of the load, or as the fault that stopped it began), judged when that
  span is at least ``MIN_WINDOW``; growth under ``LIMIT`` (10 %) in RSS and
  USS alike passes. The USS growth over the second half of that span is
  reported beside it: a leak keeps growing there, a warm-up or a burst's
  high-water mark does not;
- the lag of every consumer group of the mesh's streams: entries not yet
  acknowledged (unread plus pending) and the age of the oldest of them.

When the load has ended: how long the groups take to catch up, then the global
auditor with every order id k6 was answered. The report (markdown) is printed
and written to ``docs/soak.md``; the exit status is 1 when the auditor was not
clean or a life's memory grew by ``LIMIT`` or more. Bounded: k6 runs for the
duration, each fault bounds itself, the mesh is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from chaos.run import MESH_SETTINGS, PRODUCTS, Chaos, Scenario, audit_report, books_when_quiet, restock
from chaos.scenarios import SCENARIOS, STREAMS
from launcher.mesh import CONTEXTS, GATEWAY, LocalMesh, free_offset
from mesh.bus.redis_streams import oldest_unacknowledged_ms
from mesh.local.procs import RedisServer

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var/soak"
DOCUMENT = ROOT / "docs/soak.md"
# k6's `load` scenario (`make load SCENARIO=load RATE=...`) on the 2 shared cores
# here kept up with 160 orders/s, PlaceOrder's p99 about 0.45 s; near 200/s its p99
# neared 1 s and k6 began dropping iterations. The soak runs at 70 % of 160 by default.
CAPACITY = 160
RATE = 110
WARMUP = 60.0  # seconds of load before a process's memory baseline
MIN_WINDOW = 120.0  # a life's memory is judged over at least this long
LIMIT = 0.10  # memory growth that fails
SAMPLE_SECONDS = 10.0
ATTEMPTS = 8  # k6's tries per PlaceOrder (ATTEMPTS in the environment wins)
CATCH_UP_LIMIT = 120.0  # seconds the groups get to catch up once the load has ended
AUDIT_SETTLE = 60.0
QUIET_LIMIT = 300.0  # seconds: a backlog of ten thousand orders to ship after shipping returns
MIB = 1024 * 1024


# --- memory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes
    uss: int  # bytes: private pages (clean and dirty), what the process alone holds


def parse_smaps_rollup(text: str) -> Memory:
    """RSS and USS from the text of /proc/PID/smaps_rollup (values in kB)."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) == 2 and fields[1] == "kB":
            kb[name.strip()] = int(fields[0])
    return Memory(kb["Rss"] * 1024, (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024)


def read_memory(pid: int) -> Memory | None:
    """None once the process is gone (or a zombie, which has no pages)."""
    try:
        return parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
    except (OSError, KeyError, ValueError):
        return None


@dataclass
class Life:
    """One process of the mesh from start to stop: a restart is a new life."""

    name: str
    pid: int
    started: float  # seconds into the load (0: the mesh's own start)
    samples: list[tuple[float, Memory]] = field(default_factory=list)
    alive_at_end: bool = False

    def baseline(self, warmup: float) -> tuple[float, Memory] | None:
        return next(((at, m) for at, m in self.samples if at >= self.started + warmup), None)


def growth(base: Memory, last: Memory) -> tuple[float, float]:
    """Growth of RSS and USS from ``base`` to ``last``, as fractions."""
    return (last.rss - base.rss) / max(base.rss, 1), (last.uss - base.uss) / max(base.uss, 1)


@dataclass(frozen=True)
class Judged:
    life: Life
    base: tuple[float, Memory] | None  # (seconds into the load, memory)
    last: tuple[float, Memory] | None
    growth: tuple[float, float] | None  # RSS, USS; None when not judged
    # USS growth over the second half of the judged span: a leak grows there
    # too, a warm-up or a high-water mark (a burst's peak concurrency) does not.
    late: float | None
    verdict: str  # PASS, FAIL, DATA (Redis: judged by what it holds), or "n/a: why"


def judge(
    lives: Sequence[Life], *, warmup: float, min_window: float, limit: float, faults_at: Sequence[float] = ()
) -> list[Judged]:
    """Each life's memory verdict: PASS when RSS and USS grew by less than ``limit``
    from its first sample after ``warmup`` to its last, over ``min_window`` at least.

    A life a fault stopped ends at its sample taken as that fault began (every
    fault is preceded by a sample): what it held while the fault was under way
    (the calls it retried while the services it calls restarted, one by one) is
    that fault's burst, which the process did not live on to shed.
    """
    judged = []
    for life in lives:
        base = life.baseline(warmup)
        last = _last(life, faults_at)
        if base is None or last is None:
            judged.append(Judged(life, base, last, None, None, "n/a: no sample after its warm-up"))
        elif last[0] - base[0] < min_window:
            window = f"n/a: watched {last[0] - base[0]:.0f} s after its warm-up"
            judged.append(Judged(life, base, last, None, None, window))
        else:
            rss, uss = growth(base[1], last[1])
            # Redis's memory is its data: records kept on purpose until their TTL
            # (a day's request claims, a week's reservation markers) grow with
            # every order. What it holds, family by family, is reported instead.
            verdict = "DATA" if life.name == "redis" else "PASS" if max(rss, uss) < limit else "FAIL"
            middle = [m for at, m in life.samples if base[0] <= at <= (base[0] + last[0]) / 2][-1]
            judged.append(Judged(life, base, last, (rss, uss), growth(middle, last[1])[1], verdict))
    return judged


def _last(life: Life, faults_at: Sequence[float]) -> tuple[float, Memory] | None:
    if not life.samples:
        return None
    last = life.samples[-1]
    if life.alive_at_end or any(last[0] < at <= last[0] + SAMPLE_SECONDS for at in faults_at):
        return last  # alive, or stopped by a fault that began just after its last sample
    stopping = max((at for at in faults_at if life.started < at <= last[0]), default=None)
    if stopping is None:
        return last
    return next((sample for sample in reversed(life.samples) if sample[0] <= stopping), last)


def memory_table(judged: Sequence[Judged]) -> list[str]:
    lines = [
        "| process | pid | life | baseline at | RSS MiB | USS MiB | last at | RSS MiB | USS MiB "
        "| RSS growth | USS growth | USS growth, 2nd half | verdict |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in judged:
        life = row.life
        start = "from the start" if life.started == 0 else f"restarted at {clock(life.started)}"
        end = "to the end" if life.alive_at_end else "stopped by a fault"
        cells = [life.name, str(life.pid), f"{start}, {end}"]
        for sample in (row.base, row.last):
            cells += (
                [clock(sample[0]), f"{sample[1].rss / MIB:.1f}", f"{sample[1].uss / MIB:.1f}"]
                if sample
                else ["-", "-", "-"]
            )
        cells += [f"{row.growth[0]:+.1%}", f"{row.growth[1]:+.1%}"] if row.growth else ["-", "-"]
        cells.append(f"{row.late:+.1%}" if row.late is not None else "-")
        cells.append(row.verdict)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# --- lag -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFamily:
    name: str
    keys: int
    bytes_each: float  # MEMORY USAGE, a mean
    ttl: int  # seconds: the longest left among the sampled keys; -1: they never expire


@dataclass
class GroupLag:
    """A consumer group's backlog: entries not acknowledged (unread + pending) and the
    age of the oldest of them, the latest sample and the largest."""

    behind: int = 0
    age: float = 0.0
    max_behind: int = 0
    max_age: float = 0.0
    max_at: float = 0.0

    def add(self, behind: int, age: float, at: float) -> None:
        self.behind, self.age = behind, age
        if age > self.max_age:
            self.max_at = at
        self.max_behind, self.max_age = max(self.max_behind, behind), max(self.max_age, age)


UNREAD_CAP = 10_000  # unread entries counted per group and sample, at the most


async def group_backlogs(client: redis.Redis) -> dict[str, tuple[int, float]]:
    """Every group of the mesh's streams: entries not acknowledged (pending, and unread
    up to UNREAD_CAP), and the age in s of the oldest. Unread entries are counted past
    the group's last-delivered-id, not taken from XINFO's lag: that is wrong once Redis
    has restarted from its append-only file (Redis 7.0: tens of thousands, nothing unread)."""
    found = {}
    now_ms = time.time() * 1000
    for stream in STREAMS:
        groups: Any = await client.xinfo_groups(stream)
        for group in groups:
            name, last = (
                v.decode() if isinstance(v, bytes) else str(v) for v in (group["name"], group["last-delivered-id"])
            )
            unread: Any = await client.xrange(stream, min=f"({last}", count=UNREAD_CAP)
            oldest = await oldest_unacknowledged_ms(client, stream, name)
            behind = int(group["pending"]) + len(unread)
            found[f"{stream} / {name}"] = (behind, 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000))
    return found


def lag_table(lags: dict[str, GroupLag]) -> list[str]:
    lines = [
        "| stream / group | max entries behind | max age of the oldest, s | at | at load end: entries | age, s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, lag in sorted(lags.items()):
        lines.append(
            f"| {name} | {lag.max_behind} | {lag.max_age:.1f} | {clock(lag.max_at)} | {lag.behind} | {lag.age:.1f} |"
        )
    return lines


# --- the run -------------------------------------------------------------------------------


def plain_mesh_scenarios(scenarios: Iterable[Scenario]) -> list[Scenario]:
    """The scenarios the soak's mesh can run, by name (the seed picks from this order):
    the embedded profile, as it starts: no proxy on a link, one catalog, no settings
    of their own (those shape the mesh they start on; the soak has one mesh for all)."""
    chosen = [
        s
        for s in scenarios
        if getattr(s, "profile", "embedded") == "embedded"
        and not getattr(s, "proxied", ())
        and getattr(s, "catalog_replicas", 1) == 1
        and not getattr(s, "env", {})
    ]
    return sorted(chosen, key=lambda s: s.name)


@dataclass(frozen=True)
class Fault:
    scenario: str
    what: str
    at: float
    took: float
    outcome: str  # "ok" or the error the fault raised


def clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


class Watch:
    """Samples memory of every process of the mesh and the streams' lag."""

    def __init__(self, mesh: LocalMesh, redis_server: RedisServer, began: float) -> None:
        self.mesh = mesh
        self.redis_server = redis_server
        self.began = began
        self.lives: dict[tuple[str, int], Life] = {}
        self.lags: dict[str, GroupLag] = {}
        self.lag_errors = 0
        self.sample_errors: list[str] = []
        self.lag_samples: list[tuple[float, str, int, float]] = []  # at, group, behind, age
        self.redis_data: list[tuple[float, int, int]] = []  # at, keys, used_memory (bytes)
        self._lock = asyncio.Lock()
        self._client = redis.Redis.from_url(redis_server.url, socket_timeout=5)

    def now(self) -> float:
        return time.monotonic() - self.began

    def pids(self) -> dict[str, int]:
        processes = {**self.mesh.processes(), "redis": self.redis_server.process}
        return {
            name: process.proc.pid
            for name, process in processes.items()
            if process is not None and process.proc is not None and process.alive
        }

    async def sample(self) -> None:
        async with self._lock:
            at = self.now()
            for name, pid in self.pids().items():
                memory = read_memory(pid)
                if memory is None:
                    continue
                if (name, pid) not in self.lives:
                    # The first of a name is the mesh's own; a later one, a restart seen now.
                    first = all(life.name != name for life in self.lives.values())
                    self.lives[name, pid] = Life(name, pid, started=0.0 if first else at)
                self.lives[name, pid].samples.append((at, memory))
            try:
                backlogs = await group_backlogs(self._client)
            except (RedisError, OSError):
                self.lag_errors += 1  # Redis is down (a fault): nothing to read
                return
            for group, (behind, age) in backlogs.items():
                self.lags.setdefault(group, GroupLag()).add(behind, age, at)
                self.lag_samples.append((at, group, behind, age))
            with contextlib.suppress(RedisError, OSError):
                used: Any = await self._client.info("memory")
                self.redis_data.append((at, int(await self._client.dbsize()), int(used["used_memory"])))

    async def every(self, seconds: float) -> None:
        while True:
            try:
                await self.sample()
            except Exception as error:  # noqa: BLE001 - a sample lost is reported, the next one taken
                self.sample_errors.append(f"{clock(self.now())} {type(error).__name__}: {error}")
                print(f"soak: a sample failed: {self.sample_errors[-1]}", file=sys.stderr, flush=True)
            await asyncio.sleep(seconds)

    def finish(self) -> list[Life]:
        alive = self.pids()
        for life in self.lives.values():
            life.alive_at_end = alive.get(life.name) == life.pid
        order = {name: i for i, name in enumerate([*CONTEXTS, GATEWAY, "redis"])}
        return sorted(self.lives.values(), key=lambda life: (order[life.name], life.started))

    async def caught_up(self, limit: float) -> float | None:
        """Seconds until no group has anything unacknowledged; None past ``limit``."""
        began = time.monotonic()
        while time.monotonic() - began < limit:
            with contextlib.suppress(RedisError, OSError):
                if not any(behind for behind, _ in (await group_backlogs(self._client)).values()):
                    return time.monotonic() - began
            await asyncio.sleep(1.0)
        return None

    async def key_families(self, sample: int = 50) -> list[KeyFamily]:
        """Redis's keys by family (their first two segments: catalog:reserved, ...)."""
        counts: Counter[str] = Counter()
        picked: dict[str, list[bytes]] = {}
        async for key in self._client.scan_iter(count=1000):
            family = ":".join(key.decode(errors="replace").split(":")[:2])
            counts[family] += 1
            if len(picked.setdefault(family, [])) < sample:
                picked[family].append(key)
        families = []
        for family, keys in picked.items():
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key)
                pipe.ttl(key)
            values = await pipe.execute()
            sizes, ttls = [int(v or 0) for v in values[0::2]], [int(v) for v in values[1::2]]
            families.append(KeyFamily(family, counts[family], sum(sizes) / len(sizes), max(ttls)))
        return sorted(families, key=lambda f: -f.keys * f.bytes_each)

    def save(self, path: Path) -> None:
        """Every sample, for a closer look than the report's (var/soak/samples.json)."""
        memory = [
            {"process": life.name, "pid": life.pid, "at": round(at, 1), "rss": m.rss, "uss": m.uss}
            for life in self.lives.values()
            for at, m in life.samples
        ]
        lag = [{"at": round(at, 1), "group": g, "behind": b, "age": round(a, 2)} for at, g, b, a in self.lag_samples]
        data = [{"at": round(at, 1), "keys": k, "used_memory": u} for at, k, u in self.redis_data]
        path.write_text(json.dumps({"memory": memory, "lag": lag, "redis": data}, indent=1) + "\n")

    async def close(self) -> None:
        await self._client.aclose()


async def inject_faults(
    chaos: Chaos, watch: Watch, rng: random.Random, minutes: int, load: asyncio.subprocess.Process
) -> list[Fault]:
    """A random fault at each whole minute from the first to the last but one (later when
    the one before is still running), while the load runs."""
    scenarios = plain_mesh_scenarios(SCENARIOS.values())
    faults = []
    for minute in range(1, minutes):
        await asyncio.sleep(max(0.0, minute * 60 - watch.now()))
        if load.returncode is not None:
            break
        scenario = rng.choice(scenarios)
        await watch.sample()  # memory just before, and the baseline at the warm-up's end
        at = watch.now()
        print(f"soak: {clock(at)} {scenario.name}: {scenario.fault}", file=sys.stderr, flush=True)
        problems = len(getattr(chaos, "problems", []))
        try:
            await scenario.inject(chaos)
            outcome = "ok"
        except Exception as error:  # noqa: BLE001 - reported in the table, the run goes on
            outcome = f"failed: {type(error).__name__}: {error}"
        # What the fault checked itself and found wrong (the storm's count of sales).
        if found := getattr(chaos, "problems", [])[problems:]:
            outcome = "; ".join([*([] if outcome == "ok" else [outcome]), *found])
        if outcome != "ok":
            print(f"soak: {scenario.name}: {outcome}", file=sys.stderr, flush=True)
        faults.append(Fault(scenario.name, scenario.fault, at, watch.now() - at, outcome))
        if load.returncode is None:  # the samples end with the load
            await watch.sample()  # the restarted processes' first sample
    return faults


async def start_k6(mesh: LocalMesh, rate: float, seconds: int) -> asyncio.subprocess.Process:
    """k6's load scenario through ``python -m loadtest`` (its report and the order ids
    answered under ``WORK``; its output in WORK/k6.log). Each PlaceOrder is tried up to
    ATTEMPTS times, as the chaos harness's load does (UNAVAILABLE and DEADLINE_EXCEEDED
    again with the same request_id, backing off from 0.1 s to 6.4 s)."""
    env = {
        "ATTEMPTS": str(ATTEMPTS),
        **os.environ,
        "CHECKOUT": mesh.address("checkout"),
        "CATALOG": mesh.address("catalog"),
        "ORDER": mesh.address("order"),
        "RATE": f"{rate:g}",
        "DURATION": f"{seconds}s",
        "PRODUCTS": ",".join(PRODUCTS),
    }
    log = (WORK / "k6.log").open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest", "load", "--order-ids", str(WORK / "acked.txt"),
            "--reports", str(WORK / "reports"), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    finally:
        log.close()  # the child has its own copy


@dataclass
class Outcome:
    seed: int
    rate: float
    minutes: int
    started: datetime
    faults: list[Fault]
    judged: list[Judged]
    lags: dict[str, GroupLag]
    lag_errors: int
    caught_up: float | None
    k6: dict[str, Any]
    k6_code: int
    acked: int
    audit_code: int
    audit: str
    redis_data: list[tuple[float, int, int]]  # at, keys, used_memory
    families: list[KeyFamily]  # Redis's keys at the end
    pool: list[str]  # the scenarios the faults were picked from
    sample_errors: list[str]
    attempts: str  # k6's tries per PlaceOrder
    seconds: float = 0.0

    @property
    def audit_clean(self) -> bool:
        return self.audit_code == 0 and self.audit.rstrip().endswith("clean")

    @property
    def memory_ok(self) -> bool:
        return not any(row.verdict == "FAIL" for row in self.judged)


async def soak(rate: float, minutes: int, seed: int) -> Outcome:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    started = datetime.now(UTC)
    redis_server = RedisServer(WORK / "redis", appendonly=True, die_with_parent=True).start()
    mesh = LocalMesh(WORK / "mesh", offset=free_offset(), redis_url=redis_server.url, env=MESH_SETTINGS)
    load: asyncio.subprocess.Process | None = None
    watch: Watch | None = None
    sampler: asyncio.Task[None] | None = None
    injecting: asyncio.Task[list[Fault]] | None = None
    try:
        mesh.start(timeout=90)
        await restock(mesh)
        load = await start_k6(mesh, rate, minutes * 60)
        watch = Watch(mesh, redis_server, time.monotonic())
        sampler = asyncio.create_task(watch.every(SAMPLE_SECONDS))
        chaos = Chaos(mesh, redis_server)
        injecting = asyncio.create_task(inject_faults(chaos, watch, random.Random(seed), minutes, load))
        k6_code = await load.wait()
        await watch.sample()  # the end of the load
        sampler.cancel()
        lives = watch.finish()
        if not injecting.done():
            print("soak: the load has ended; the last fault is still running", file=sys.stderr, flush=True)
        faults = await injecting
        families = await watch.key_families()
        watch.save(WORK / "samples.json")
        print("soak: waiting for the consumers to catch up", file=sys.stderr, flush=True)
        caught_up = await watch.caught_up(CATCH_UP_LIMIT)
        acked = [line.strip() for line in (WORK / "acked.txt").read_text().splitlines() if line.strip()]
        acked += [order_id for load in chaos.loads for order_id in load["order_ids"]]  # the storm's
        # A fault in the last minute (shipping down to the end) leaves work owed:
        # the auditor judges the mesh once nothing is, as the chaos harness does.
        print("soak: waiting for a quiet mesh", file=sys.stderr, flush=True)
        await books_when_quiet(mesh, acked, limit=QUIET_LIMIT)
        print(f"soak: the auditor, on {len(acked)} acknowledged orders", file=sys.stderr, flush=True)
        audit_code, audit = await audit_report(mesh, acked, WORK, settle=AUDIT_SETTLE)
        summaries = sorted((WORK / "reports").glob("load-*.json"))
        k6 = json.loads(summaries[-1].read_text()) if summaries else {}
        return Outcome(
            seed, rate, minutes, started, faults,
            judge(lives, warmup=WARMUP, min_window=MIN_WINDOW, limit=LIMIT, faults_at=[f.at for f in faults]),
            watch.lags, watch.lag_errors, caught_up, k6, k6_code, len(acked), audit_code, audit,
            watch.redis_data, families, [s.name for s in plain_mesh_scenarios(SCENARIOS.values())],
            watch.sample_errors, os.environ.get("ATTEMPTS", str(ATTEMPTS)),
        )  # fmt: skip
    finally:
        for task in (sampler, injecting):
            if task is not None:
                task.cancel()
        if load is not None and load.returncode is None:
            load.send_signal(signal.SIGTERM)  # k6 stops and writes its summary
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load.wait(), 60)
            if load.returncode is None:
                load.kill()
        if watch is not None:
            await watch.close()
        mesh.stop()
        redis_server.stop()


# --- the report ----------------------------------------------------------------------------


def redis_lines(data: Sequence[tuple[float, int, int]], families: Sequence[KeyFamily], seconds: float) -> list[str]:
    """Redis's data at the warm-up's end and at the end, by key family: what grows, and
    what the families that expire weigh once their TTL turns over at this rate."""
    base = next(((at, keys, used) for at, keys, used in data if at >= WARMUP), None)
    if base is None or not families:
        return []
    (at, keys, used), (end_at, end_keys, end_used) = base, data[-1]
    lines = [
        f"Redis's memory is mostly its data (DBSIZE, INFO used_memory): {keys} keys, {used / MIB:.1f} MiB at "
        f"{clock(at)}; {end_keys} keys, {end_used / MIB:.1f} MiB at {clock(end_at)}. Its keys at the end, by family "
        "(bytes: MEMORY USAGE, the mean of 50; TTL: the longest left of those 50). A family whose keys expire "
        f"after more than the run grows until its TTL turns over: at the rate they were made here "
        f"({seconds / 60:.0f} min), it then holds",
        "",
        "| key family | keys | bytes each | MiB | expire after | MiB once the TTL turns over |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for family in families:
        held = family.keys * family.bytes_each
        expiry, steady = "never", "-"
        if family.ttl > 0:
            expiry = (
                f"{family.ttl / 86400:.1f} d"
                if family.ttl >= 2 * 86400
                else f"{family.ttl / 3600:.1f} h"
                if family.ttl >= 3600
                else f"{family.ttl} s"
            )
            steady = f"{held * max(1.0, family.ttl / seconds) / MIB:,.0f}"
        lines.append(
            f"| {family.name} | {family.keys} | {family.bytes_each:.0f} | {held / MIB:.1f} | {expiry} | {steady} |"
        )
    return lines


def k6_lines(k6: dict[str, Any], code: int) -> list[str]:
    metrics: dict[str, dict[str, Any]] = k6.get("metrics", {})
    if not metrics:
        return ["k6 left no summary (see var/soak/k6.log)"]

    def count(name: str) -> int:
        return int(metrics.get(name, {}).get("count", 0))

    errors = metrics.get("errors", {})
    attempt = metrics.get("grpc_req_duration{rpc:PlaceOrder}", {})
    whole = metrics.get("place_order_duration", {})
    failed = [
        f"`{name}` {threshold}"
        for name, values in sorted(metrics.items())
        for threshold, crossed in values.get("thresholds", {}).items()
        if crossed
    ]
    iterations = metrics.get("iterations", {})
    rows = [
        ("PlaceOrder calls (k6 iterations)", f"{count('iterations')} ({iterations.get('rate', 0):.1f}/s)"),
        ("answered OK", str(count("orders_placed"))),
        ("answered short of stock", str(count("orders_sold_out"))),
        (
            "errors: final answer not OK after k6's tries",
            f"{int(errors.get('passes', 0))} ({errors.get('value', 0):.3%})",
        ),
        ("attempts retried (UNAVAILABLE, DEADLINE_EXCEEDED)", str(count("retries"))),
        ("iterations k6 dropped (no VU free)", str(count("dropped_iterations"))),
        ("PlaceOrder per attempt p50 / p99 / max, ms", _trend(attempt)),
        ("PlaceOrder with retries p50 / p99 / max, ms", _trend(whole)),
        ("k6 thresholds", "all held" if not failed else "crossed: " + "; ".join(failed)),
        ("k6 exit status", str(code)),
    ]
    return ["| k6 | |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)]


def _trend(values: dict[str, Any]) -> str:
    return " / ".join(f"{float(values.get(stat, 0)):.0f}" for stat in ("med", "p(99)", "max"))


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    memory = next((int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal:")), 0)
    return f"{cpu}, {os.cpu_count()} cores, {memory / 1024 / 1024:.0f} GiB memory, Linux {platform.release()}"


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def report(outcome: Outcome, *, host: str, at_commit: str) -> str:
    judged = [row for row in outcome.judged if row.growth is not None]
    command = f"make soak MINUTES={outcome.minutes}" + (f" RATE={outcome.rate:g}" if outcome.rate != RATE else "")
    memory = "FAIL" if not outcome.memory_ok else "PASS" if judged else "not judged"
    failed = sorted({row.life.name for row in outcome.judged if row.verdict == "FAIL"})
    unjudged = sorted({row.life.name for row in outcome.judged} - {row.life.name for row in judged})
    lines = [
        "# Soak: k6 `load` under a random fault a minute",
        "",
        f"`{command}` (`python -m chaos.soak`), started "
        f"{outcome.started:%Y-%m-%d %H:%M} UTC, {outcome.seconds / 60:.1f} min in all, at commit {at_commit}.",
        f"Machine: {host}; the load (k6) runs on the same cores as the mesh.",
        "",
        f"- rate: {outcome.rate:g} orders/s for {outcome.minutes} min (`RATE=`), {outcome.rate / CAPACITY:.0%} of "
        f"{CAPACITY}/s, what k6's `load` scenario sustained on this machine without faults",
        "- mesh: the embedded profile (redis-server with its append-only file, SQLite), loopback only, "
        + ", ".join(f"{name}={value}" for name, value in MESH_SETTINGS.items())
        + " as in the chaos harness",
        f"- seed: {outcome.seed} (`SOAK_SEED={outcome.seed} {command}` injects the same faults at the same minutes)",
        f"- **auditor: {'clean' if outcome.audit_clean else 'NOT CLEAN'}**; "
        f"**memory: {memory}**{' (' + ', '.join(failed) + ')' if failed else ''}: {len(judged)} of "
        f"{len(outcome.judged)} process lives judged, growth under {LIMIT:.0%} in RSS and USS passes"
        + (f"; no life of {', '.join(unjudged)} lived long enough to be judged" if unjudged else ""),
        f"- faults: {len(outcome.faults)} injected, "
        f"{sum(f.outcome != 'ok' for f in outcome.faults)} failed or found a problem themselves",
        "",
        "## Faults",
        "",
        f"Picked from {', '.join(outcome.pool)}; the other scenarios of chaos/scenarios.py need a mesh of "
        "their own (the full profile, proxies on the links, a second catalog, settings of their own).",
        "",
        "| at | scenario | fault | took, s | outcome |",
        "|---:|---|---|---:|---|",
        *(f"| {clock(f.at)} | {f.scenario} | {f.what} | {f.took:.1f} | {f.outcome} |" for f in outcome.faults),
        "",
        "## Load",
        "",
        f"`loadtest/load.js`: PlaceOrder of one unit of {', '.join(PRODUCTS)} at a constant arrival rate; "
        f"each is tried up to ATTEMPTS={outcome.attempts} times (UNAVAILABLE and DEADLINE_EXCEEDED again, with "
        "the same request_id). Its thresholds are for a run without faults.",
        "",
        *k6_lines(outcome.k6, outcome.k6_code),
        "",
        "## Memory",
        "",
        f"Every process of the mesh, sampled every {SAMPLE_SECONDS:.0f} s from /proc/PID/smaps_rollup "
        "(USS: private pages). A process a fault restarts is a new life: its growth runs from its own first sample "
        f"{WARMUP:.0f} s or more after it started (the warm-up) to its last sample (the end of the load, or "
        "the one taken as the fault that stopped it began), and is judged when that span is "
        f"{MIN_WINDOW:.0f} s or more. "
        "Times are minutes into the load.",
        "",
        *memory_table(outcome.judged),
        "",
        *redis_lines(outcome.redis_data, outcome.families, outcome.minutes * 60),
        "",
        *(
            ["Samples that failed (memory and lag): " + "; ".join(outcome.sample_errors), ""]
            if outcome.sample_errors
            else []
        ),
        "## Lag",
        "",
        f"Every consumer group of the mesh's streams, sampled every {SAMPLE_SECONDS:.0f} s: entries not "
        f"acknowledged (pending, and unread counted up to {UNREAD_CAP} a sample) and the age of the oldest of them"
        + (f" ({outcome.lag_errors} samples missed while Redis was down)" if outcome.lag_errors else "")
        + ".",
        "",
        *lag_table(outcome.lags),
        "",
        (
            f"After the load: every group caught up in {outcome.caught_up:.1f} s."
            if outcome.caught_up is not None
            else f"After the load: some group was still behind after {CATCH_UP_LIMIT:.0f} s."
        ),
        "",
        "## The global auditor",
        "",
        f"`python -m auditor --settle {AUDIT_SETTLE:.0f}` with the {outcome.acked} order ids the load was "
        "answered (k6's, and those of the loads a fault ran itself):",
        "",
        "```text",
        outcome.audit.rstrip(),
        "```",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10, help="how long the load runs (10)")
    parser.add_argument("--rate", type=float, default=RATE, help=f"orders/s ({RATE}: 70%% of {CAPACITY})")
    parser.add_argument("--seed", type=int, default=os.environ.get("SOAK_SEED") or None, help="default: SOAK_SEED")
    parser.add_argument("--document", type=Path, default=DOCUMENT, help="where the report goes (docs/soak.md)")
    args = parser.parse_args(argv)
    if args.minutes < 2:
        parser.error("--minutes: 2 at least (the warm-up, then a fault a minute)")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(
        f"soak: {args.rate:g} orders/s for {args.minutes} min, seed {seed}; work under {WORK.relative_to(ROOT)}",
        file=sys.stderr,
        flush=True,
    )
    began, at_commit = time.monotonic(), commit()  # the code the mesh starts from
    outcome = asyncio.run(soak(args.rate, args.minutes, seed))
    outcome.seconds = time.monotonic() - began
    text = report(outcome, host=machine(), at_commit=at_commit)
    print(text)
    args.document.write_text(text)
    print(f"soak: written to {args.document}", file=sys.stderr)
    if not (outcome.audit_clean and outcome.memory_ok):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
