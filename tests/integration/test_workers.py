"""WORKERS=2: two processes serve one gRPC port (SO_REUSEPORT), each with its
own /metrics; SIGTERM to the supervisor drains both; a worker that dies takes
the supervisor down with a non-zero code."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.local.procs import bindable, free_port, port_open
from tests.support import eventually


def started_calls(metrics_port: int) -> float:
    """grpc_server_started_total summed over methods, from one worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("grpc_server_started_total{")
    )


async def start_payment(tmp_path: Path, port: int, metrics: int) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "METRICS_PORT": str(metrics),
        "WORKERS": "2",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'payment.db'}",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }
    env.pop("WORKER_INDEX", None)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "payment", env=env)

    async def both_listening() -> bool:
        return port_open(port) and port_open(metrics) and port_open(metrics + 1)

    await eventually(both_listening, 60, "both workers to listen")
    return process


async def test_two_workers_share_one_port_and_stop_together(tmp_path: Path) -> None:
    port, metrics = ports()
    process = await start_payment(tmp_path, port, metrics)
    try:
        # The kernel spreads *connections*: a new channel per call reaches both.
        for _ in range(40):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
        per_worker = [started_calls(metrics), started_calls(metrics + 1)]
        assert all(calls > 0 for calls in per_worker), f"each worker answered some calls: {per_worker}"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert not port_open(port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_worker_that_dies_stops_the_supervisor_with_an_error(tmp_path: Path) -> None:
    port, metrics = ports()
    process = await start_payment(tmp_path, port, metrics)
    try:
        workers = children(process.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), 30) == 1
        # The supervisor exits only once it has reaped every worker: none is left.
        assert children(process.pid) == [], "the other worker was stopped too"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def ports() -> tuple[int, int]:
    """A gRPC port, and a metrics port whose next one is free too (worker 1's)."""
    port = free_port()
    metrics = free_port()
    while not bindable(metrics + 1) or port in (metrics, metrics + 1):
        metrics = free_port()
    return port, metrics


def children(pid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(int(p.name)) == pid]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
