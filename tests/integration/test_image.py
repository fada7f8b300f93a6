"""The one container image, built with podman as `make image` builds it, and run
the way the chart runs it: non-root, read-only root filesystem with a tmpfs at
/tmp, every capability dropped, no privilege escalation."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.local.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
PODMAN = str(ROOT / "scripts/image/podman.sh")
TAG = "localhost/ordermesh:test"
# What the chart's securityContext asks for, as podman flags; the ulimits are
# this VM's (no CAP_SYS_RESOURCE for the runtime to raise them).
RESTRICTED = [
    "--read-only",
    "--tmpfs", "/tmp",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
    "--ulimit", "nofile=20000:20000",
    "--ulimit", "nproc=32768:32768",
    "--network", "host",
]  # fmt: skip

pytestmark = pytest.mark.timeout(600)


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    built = subprocess.run(
        [str(ROOT / "scripts/image/build.sh"), TAG], capture_output=True, text=True, timeout=540, cwd=ROOT
    )
    assert built.returncode == 0, built.stdout + built.stderr
    yield TAG
    podman("rmi", "-f", TAG)


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="readiness"), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def test_a_context_serves_from_the_image_as_a_restricted_non_root_process_and_stops_on_sigterm(image: str) -> None:
    port, name = free_port(), f"om-{uuid.uuid4().hex[:8]}"
    env = [
        "-e", "GRPC_HOST=127.0.0.1",
        "-e", f"GRPC_PORT={port}",
        "-e", "METRICS_PORT=0",
        "-e", "DATABASE_URL=sqlite+aiosqlite:////tmp/payment.db",
        "-e", "SHUTDOWN_GRACE_SECONDS=5",
    ]  # fmt: skip
    started = podman("run", "-d", "--name", name, *RESTRICTED, *env, image, "payment")
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 30
        while not serving(port):
            assert time.monotonic() < deadline, podman("logs", name).stderr[-2000:]
            time.sleep(0.2)
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        stopping = time.monotonic()
        assert podman("stop", "-t", "20", name).returncode == 0
        took = time.monotonic() - stopping
        # PID 1 handled SIGTERM itself: a clean exit well inside podman's 20 s,
        # not the SIGKILL (exit 137) a process ignoring SIGTERM would get.
        state = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert state == "0" and took < 10, (state, took)
        assert "payment stopped" in podman("logs", name).stderr
    finally:
        podman("rm", "-f", name)


def test_the_image_holds_every_context_and_no_compiler(image: str) -> None:
    script = (
        "import shutil, sys\n"
        "import catalog.bootstrap, checkout.bootstrap, order.bootstrap, payment.bootstrap, shipping.bootstrap\n"
        "import analytics.bootstrap, gateway.bootstrap, gateway.pages\n"
        "console = gateway.pages.CONSOLE\n"
        "assert (console / 'pages' / 'products.html').is_file() and (console / 'static' / 'api.js').is_file()\n"
        "import auditor.audit, mesh.bus.rocketmq\n"
        "found = [c for c in ('gcc', 'cc', 'g++', 'clang', 'make', 'pip') if shutil.which(c)]\n"
        "sys.exit(f'tools in the image: {found}' if found else 0)\n"
    )
    ran = podman("run", "--rm", *RESTRICTED, "--entrypoint", "python3", image, "-c", script)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user == "10001:10001"
