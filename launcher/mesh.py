"""Run the whole mesh locally: ``python -m launcher`` (what ``make run`` calls).

Starts a real redis-server when none answers at REDIS_URL, then the six
contexts as child processes on the local ports (catalog 50051 ... shipping
50055, analytics 50056; metrics 9101 ... 9106) and the HTTP gateway (JSON API,
SSE, web console) on 8080, metrics 9107: seven processes. Ctrl-C (or SIGTERM)
stops the services gracefully, then the servers it started. Every other environment variable is
passed through, so ``PAYMENT_LATENCY_SECONDS=3 make run`` slows payment down.

Profiles (``--profile``, ``make run PROFILE=...``):
- ``embedded`` (default): SQLite files under ``var/``, events on Redis Streams.
- ``full``: a private MariaDB under ``var/mariadb`` and a RocketMQ 5 broker
  under ``var/rocketmq`` (its topics and groups created from the order
  context's subscriptions); ``EVENT_TRANSPORT=rocketmq`` for every process.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from grpc_health.v1 import health_pb2

from launcher.topology import mesh_topology
from mesh.local.jaeger import JaegerServer
from mesh.local.procs import (
    ManagedProcess,
    MariaDBServer,
    RedisServer,
    bindable,
    ephemeral_ports,
    port_open,
    port_owner,
)
from mesh.local.prometheus import PrometheusServer
from mesh.local.rocketmq import RocketMQServer
from mesh.local.tls import Certificates, make_certificates
from mesh.probe import health_status
from mesh.settings import EventTransport

CONTEXTS = ("catalog", "checkout", "order", "payment", "shipping", "analytics")
GRPC_BASE = 50051
METRICS_BASE = 9101
# The seventh process: HTTP, not gRPC, so it is not one of CONTEXTS; a client
# of four of them, and of Redis (the order event streams it relays as SSE).
GATEWAY = "gateway"
GATEWAY_HTTP_PORT = 8080
GATEWAY_METRICS_PORT = METRICS_BASE + len(CONTEXTS)  # 9107

# Settings of every local process unless the environment (or ``env=``) says
# otherwise, as in the chart: clients watch each dependency's readiness, and a
# process stopping stays NOT_SERVING for half a second before it stops
# accepting, so its clients have stopped calling it by then (a call reaching a
# stopping server is answered CANCELLED, see mesh.server). A mesh's stop takes
# the half second once (every process stops at the same time).
#
# MALLOC_ARENA_MAX=2: glibc gives each thread that allocates an arena of its
# own (up to 8 per core), and every arena keeps its high-water mark; with
# gRPC's and aiosqlite's threads that read as growth in the soak (docs/soak.md).
# The image sets it too.
LOCAL_SETTINGS = {"CLIENT_HEALTH_CHECK": "readiness", "SHUTDOWN_DELAY_SECONDS": "0.5", "MALLOC_ARENA_MAX": "2"}


# The database setting of each context that has one, and its database's name
# (the order context takes a list of shards; locally there is one).
DATABASES = {
    "catalog": ("DATABASE_URL", "catalog"),
    "order": ("DATABASE_URLS", "order-0"),
    "payment": ("DATABASE_URL", "payment"),
    "shipping": ("DATABASE_URL", "shipping"),
    "analytics": ("DATABASE_URL", "analytics"),
}


@dataclass(frozen=True)
class Profile:
    transport: EventTransport = "embedded"
    database: Literal["sqlite", "mariadb"] = "sqlite"


PROFILES = {"embedded": Profile(), "full": Profile("rocketmq", "mariadb")}
REDIS_URLS = {"embedded": "redis://127.0.0.1:6379/0", "full": "redis://127.0.0.1:6379/1"}


@dataclass(frozen=True)
class Endpoint:
    context: str
    grpc_port: int
    metrics_port: int


def endpoints(offset: int = 0) -> list[Endpoint]:
    return [Endpoint(c, GRPC_BASE + i + offset, METRICS_BASE + i + offset) for i, c in enumerate(CONTEXTS)]


def mesh_ports(offset: int = 0) -> list[int]:
    """Every port a mesh with this offset listens on: gRPC and metrics of each
    context, the gateway's HTTP and metrics."""
    ports = [p for e in endpoints(offset) for p in (e.grpc_port, e.metrics_port)]
    return [*ports, GATEWAY_HTTP_PORT + offset, GATEWAY_METRICS_PORT + offset]


def free_offset() -> int:
    """A port offset for a private mesh (tests, benchmarks) where every port is free and none
    is in the kernel's ephemeral range: gRPC ports above it, HTTP and metrics ports below it."""
    low, high = ephemeral_ports()
    first = high + 1 - GRPC_BASE  # the smallest offset putting every gRPC port above the range
    last = 65535 - GRPC_BASE - len(CONTEXTS)
    for _ in range(100):
        offset = random.randrange(first, last, 10)
        ports = mesh_ports(offset)
        if all(not low <= p <= high for p in ports) and all(bindable(p) for p in ports):
            return offset
    raise RuntimeError("no free port range for the mesh")


def is_serving(port: int, timeout: float = 1.0, certificates: Certificates | None = None) -> bool:
    credentials = certificates.credentials() if certificates is not None else None
    status = health_status(f"127.0.0.1:{port}", credentials=credentials, timeout=timeout)
    return bool(status == health_pb2.HealthCheckResponse.SERVING)


def is_ready_http(url: str, timeout: float = 1.0) -> bool:
    """The gateway's readiness: GET /readyz answers 200 (Redis and the mesh answer it)."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class LocalMesh:
    def __init__(
        self,
        var_dir: Path,
        *,
        offset: int = 0,
        redis_url: str | None = None,
        profile: Profile = Profile(),
        mariadb: MariaDBServer | None = None,
        rocketmq: RocketMQServer | None = None,
        tls: bool = False,
        tracing: bool = False,
        monitoring: bool = False,
        jaeger: JaegerServer | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``mariadb`` and ``rocketmq``: servers already running (tests share them);
        otherwise the profile's servers are started here, and stopped with the mesh.
        ``tracing``: a local Jaeger every process exports to; ``monitoring``: a
        local Prometheus scraping every process (monitoring/prometheus.yml);
        ``jaeger``: one already running to export to instead (tests share one);
        ``env``: settings for every process, over this process's environment."""
        self.var_dir = var_dir.resolve()
        self.offset = offset
        self.endpoints = endpoints(offset)
        self.redis_url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.profile = profile
        self.redis: RedisServer | None = None
        self.mariadb = mariadb
        self.rocketmq = rocketmq
        self._started: list[MariaDBServer | RocketMQServer | RedisServer | JaegerServer | PrometheusServer] = []
        self._own_jaeger = jaeger is None and tracing
        self.jaeger = jaeger or (
            JaegerServer(
                self.var_dir / "jaeger", otlp_port=4317 + offset, query_port=16686 + offset, die_with_parent=True
            )
            if tracing
            else None
        )
        self.prometheus = (
            PrometheusServer(self.var_dir / "prometheus", port=9090 + offset, port_offset=offset, die_with_parent=True)
            if monitoring
            else None
        )
        # The six gRPC contexts; the gateway is apart (``gateway``): it is HTTP.
        self.services: dict[str, ManagedProcess] = {}
        self.gateway: ManagedProcess | None = None
        self.gateway_port = GATEWAY_HTTP_PORT + offset
        self.gateway_metrics_port = GATEWAY_METRICS_PORT + offset
        self.env = env or {}
        # Mutual TLS between the processes (TLS=1): a private CA under var_dir/tls.
        self.certificates = make_certificates(self.var_dir / "tls") if tls else None

    def address(self, context: str) -> str:
        return f"127.0.0.1:{next(e.grpc_port for e in self.endpoints if e.context == context)}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self, timeout: float = 60.0) -> None:
        self._check_ports()
        self._ensure_redis()
        self._ensure_profile_servers()
        for server in (self.jaeger if self._own_jaeger else None, self.prometheus):
            if server is not None:
                server.start()
                self._started.append(server)
        for endpoint in self.endpoints:
            env = {
                **self._common_env(),
                # Loopback only: operator RPCs (SetStock, ReleaseStock, Refund) and
                # metrics are not for the network; GRPC_HOST in the environment wins.
                "GRPC_HOST": os.environ.get("GRPC_HOST", "127.0.0.1"),
                "GRPC_PORT": str(endpoint.grpc_port),
                "METRICS_PORT": str(endpoint.metrics_port),
            }
            if endpoint.context in DATABASES:  # checkout has none
                variable, name = DATABASES[endpoint.context]
                env[variable] = self.database_url(name)
            self.services[endpoint.context] = self._spawn(endpoint.context, env)
        self.gateway = self._spawn(GATEWAY, self._gateway_env())
        self._wait_serving(timeout)
        self._write_audit_env()

    def _common_env(self) -> dict[str, str]:
        """What every process gets: the local defaults under this process's
        environment, the addresses of the mesh, then ``env`` (the chaos
        harness puts its proxies in the addresses), the transport, TLS, tracing."""
        env = {
            **LOCAL_SETTINGS,
            **os.environ,
            "REDIS_URL": self.redis_url,
            "CATALOG_ADDRESS": self.address("catalog"),
            "CHECKOUT_ADDRESS": self.address("checkout"),
            "ORDER_ADDRESS": self.address("order"),
            "PAYMENT_ADDRESS": self.address("payment"),
            "SHIPPING_ADDRESS": self.address("shipping"),
            "ANALYTICS_ADDRESS": self.address("analytics"),
            **self.env,
            "EVENT_TRANSPORT": self.profile.transport,
            "PYTHONUNBUFFERED": "1",
        }
        if self.rocketmq is not None:
            env["ROCKETMQ_ENDPOINT"] = self.rocketmq.grpc_endpoint
        if self.jaeger is not None:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.jaeger.otlp_endpoint
        if self.certificates is not None:
            env.update(self.certificates.env())  # the gateway is a TLS client of the mesh with them
        return env

    def _gateway_env(self) -> dict[str, str]:
        env = {
            **self._common_env(),
            # Loopback like the gRPC ports; HTTP_HOST in the environment wins.
            "HTTP_HOST": os.environ.get("HTTP_HOST", "127.0.0.1"),
            "HTTP_PORT": str(self.gateway_port),
            "METRICS_PORT": str(self.gateway_metrics_port),
        }
        if self.jaeger is not None:
            # Orders link to their trace (`trace_url`) in this Jaeger's UI.
            env.setdefault("JAEGER_UI_URL", self.jaeger.query_url)
        return env

    def _spawn(self, name: str, env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess(
            name, [sys.executable, "-m", name], self.var_dir / "logs" / f"{name}.log", env, die_with_parent=True
        )
        process.start()
        return process

    def database_url(self, name: str) -> str:
        if self.mariadb is None:
            return f"sqlite+aiosqlite:///{self.var_dir / f'{name}.db'}"
        database = "ordermesh_" + name.replace("-", "_")
        self.mariadb.create_database(database)
        return self.mariadb.url(database)

    def _check_ports(self) -> None:
        """Name whoever holds one of this mesh's ports (a leftover of an earlier
        run, most likely) instead of failing later on "address in use"."""
        ports = mesh_ports(self.offset)
        busy = [f"{port} is held by {port_owner(port) or 'an unknown process'}" for port in ports if not bindable(port)]
        if busy:
            raise RuntimeError(
                "ports in use: " + "; ".join(busy) + ". A leftover of an earlier run? Stop it, or choose "
                "other ports with --port-offset"
            )

    def audit_env(self) -> dict[str, str]:
        """Where ``python -m auditor`` reads this mesh (its settings' variables)."""
        return {
            "CATALOG_DATABASE_URL": self.database_url("catalog"),
            "ORDER_DATABASE_URLS": self.database_url("order-0"),
            "PAYMENT_DATABASE_URL": self.database_url("payment"),
            "SHIPPING_DATABASE_URL": self.database_url("shipping"),
            "REDIS_URL": self.redis_url,
        }

    def _write_audit_env(self) -> None:
        # `make audit` reads it: the auditor finds this mesh's databases on either profile.
        lines = [f"{name}={shlex.quote(value)}" for name, value in self.audit_env().items()]
        (self.var_dir / "audit.env").write_text("\n".join(lines) + "\n")

    def _ensure_profile_servers(self) -> None:
        if self.profile.database == "mariadb" and self.mariadb is None:
            self.mariadb = MariaDBServer(self.var_dir / "mariadb", die_with_parent=True).start()
            self._started.append(self.mariadb)
        if self.profile.transport == "rocketmq" and self.rocketmq is None:
            topology = mesh_topology()
            # RocketMQ's usual ports (shifted like the mesh's): never one of the mesh's own,
            # and with no offset the proxy answers where ROCKETMQ_ENDPOINT points by default.
            self.rocketmq = RocketMQServer(
                self.var_dir / "rocketmq",
                topology.topics,
                topology.groups,
                namesrv_port=9876 + self.offset,
                broker_port=10911 + self.offset,
                proxy_grpc_port=8081 + self.offset,
                # Not 8080: the gateway's (the mesh's clients use the proxy's gRPC port only).
                proxy_remoting_port=8082 + self.offset,
                die_with_parent=True,
            )
            self._started.append(self.rocketmq)
            self.rocketmq.start()

    def _ensure_redis(self) -> None:
        parsed = urlparse(self.redis_url)
        port = parsed.port or 6379
        if port_open(port, parsed.hostname or "127.0.0.1"):
            return
        # Append-only: the stock journal survives a restart of the local Redis.
        self.redis = RedisServer(self.var_dir / "redis", port, appendonly=True, die_with_parent=True).start()
        self._started.append(self.redis)

    def _wait_serving(self, timeout: float) -> None:
        """Until every context's gRPC health answers SERVING and the gateway's
        /readyz answers 200 (it waits for four of the contexts and Redis itself)."""
        deadline = time.monotonic() + timeout
        waiting: dict[str, Callable[[], bool]] = {
            e.context: lambda port=e.grpc_port: is_serving(port, certificates=self.certificates)  # type: ignore[misc]
            for e in self.endpoints
        }
        waiting[GATEWAY] = lambda: is_ready_http(self.gateway_url)
        processes = self.processes()
        while waiting:
            for name, ready in list(waiting.items()):
                process = processes[name]
                if not process.alive:
                    raise RuntimeError(f"{name} exited during start-up:\n{process.tail()}")
                if ready():
                    del waiting[name]
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(waiting))}")
            time.sleep(0.1)

    def processes(self) -> dict[str, ManagedProcess]:
        """Every process of the mesh: the contexts, then the gateway."""
        return {**self.services, **({GATEWAY: self.gateway} if self.gateway is not None else {})}

    def dead(self) -> list[str]:
        return [name for name, process in self.processes().items() if not process.alive]

    def stop(self) -> None:
        processes = self.processes().values()
        for process in processes:
            process.signal(signal.SIGTERM)
        for process in processes:
            process.stop(timeout=20)
        for server in reversed(self._started):
            server.stop()


def banner(mesh: LocalMesh) -> str:
    lines = ["", "ordermesh is running:"]
    for e in mesh.endpoints:
        lines.append(
            f"  {e.context:<9} grpc localhost:{e.grpc_port}   metrics http://localhost:{e.metrics_port}/metrics"
        )
    gateway = f"http://localhost:{mesh.gateway_port}"
    lines.append(
        f"  {GATEWAY:<9} {gateway} (JSON API, SSE, web console)   "
        f"metrics http://localhost:{mesh.gateway_metrics_port}/metrics"
    )
    catalog, payment = mesh.endpoints[0].grpc_port, mesh.endpoints[3].grpc_port
    certificates = mesh.certificates
    flags = (
        "-plaintext"
        if certificates is None
        else f"-cacert {certificates.ca} -cert {certificates.cert} -key {certificates.key}"
    )
    lines += [
        f"  redis     {mesh.redis_url}{' (started here)' if mesh.redis else ''}",
        f"  events    {mesh.profile.transport}"
        + (f" (RocketMQ proxy {mesh.rocketmq.grpc_endpoint})" if mesh.rocketmq else " (Redis Streams)"),
        f"  databases {f'MariaDB 127.0.0.1:{mesh.mariadb.port}' if mesh.mariadb else f'SQLite in {mesh.var_dir}'}",
        f"  logs      {mesh.var_dir / 'logs'}",
        f"  tls       {'mutual TLS, CA ' + str(certificates.ca) if certificates else 'off (TLS=1 turns it on)'}",
        "  tracing   "
        + (
            f"Jaeger, query API {mesh.jaeger.query_url}/api/traces/TRACE_ID (its web UI is a placeholder here); "
            "python -m order trace ORDER_ID prints an order's trace"
            if mesh.jaeger
            else "off (TRACING=1 starts a local Jaeger)"
        ),
        "  metrics   "
        + (
            f"Prometheus {mesh.prometheus.url} (alerts: {mesh.prometheus.url}/alerts)"
            if mesh.prometheus
            else "each process's /metrics (MONITORING=1 starts a local Prometheus)"
        ),
        "",
        f"Open {gateway}/ for the web console. Try:",
        f"  curl {gateway}/api/products?page_size=3",
        f"  grpcurl {flags} localhost:{catalog} list",
        f"  grpcurl {flags} -d '{{\"page_size\": 3}}' localhost:{catalog} "
        "ordermesh.catalog.v1.CatalogService/ListProducts",
        f"  grpcurl {flags} localhost:{payment} grpc.health.v1.Health/Check",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the ordermesh services locally.")
    parser.add_argument("--var-dir", type=Path, default=None, help="default: var/<profile>")
    parser.add_argument("--port-offset", type=int, default=0, help="added to every gRPC and metrics port")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="embedded")
    parser.add_argument("--tls", action="store_true", help="mutual TLS between the processes (a local CA)")
    parser.add_argument("--tracing", action="store_true", help="a local Jaeger every process sends its spans to")
    parser.add_argument("--monitoring", action="store_true", help="a local Prometheus scraping every process")
    args = parser.parse_args()

    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Each profile has its own folder and its own Redis database: one profile's
    # streams, claims and counters are never read by the other's processes.
    var_dir = args.var_dir or Path("var") / args.profile
    redis_url = args.redis_url or os.environ.get("REDIS_URL") or REDIS_URLS[args.profile]
    mesh = LocalMesh(
        var_dir,
        offset=args.port_offset,
        redis_url=redis_url,
        profile=PROFILES[args.profile],
        tls=args.tls,
        tracing=args.tracing,
        monitoring=args.monitoring,
    )
    try:
        mesh.start()
        print(banner(mesh), flush=True)
        while not stop:
            if dead := mesh.dead():
                print(f"stopped unexpectedly: {', '.join(dead)} (see {mesh.var_dir / 'logs'})", file=sys.stderr)
                break
            time.sleep(0.5)
    except (RuntimeError, TimeoutError) as error:
        print(f"ordermesh: {error}", file=sys.stderr)
        mesh.stop()
        raise SystemExit(1) from None
    print("stopping ...", flush=True)
    mesh.stop()
    print("stopped.", flush=True)
    if not stop:
        raise SystemExit(1)
