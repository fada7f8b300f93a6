"""A real RocketMQ 5 broker on loopback for development and tests.

Two JVMs from the jars that ``scripts/setup/rocketmq.sh`` installs in
``.tools/rocketmq/lib``: the name server, then the proxy in local mode, which
runs the broker in its own JVM. Clients of the 5.x SDKs talk gRPC to the proxy
(``grpc_endpoint``). Every port is picked free at the first start, so several
instances (and the other tests) can run side by side. The command lines, files,
timings and gotchas behind every choice here are in
``scripts/setup/ROCKETMQ-NOTES.md``.

Stand-alone: ``python -m mesh.local.rocketmq --workdir var/rocketmq --topic T1 --group G1``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from rocketmq.grpc_protocol import (
    Address,
    AddressScheme,
    Endpoints,
    MessagingServiceStub,
    QueryRouteRequest,
    Resource,
)
from rocketmq.grpc_protocol.definition_pb2 import Code, MessageType

from mesh.local.procs import ManagedProcess, free_port, port_open

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LIB = REPO_ROOT / ".tools" / "rocketmq" / "lib"
SETUP_HINT = "run 'bash scripts/setup/rocketmq.sh'"

CLUSTER = "DefaultCluster"
BROKER_NAME = "broker-a"
HOST = "127.0.0.1"
QUEUES = 4  # read = write queues per topic: enough for a few concurrent consumers, small on disk
MESSAGE_TYPES = ("NORMAL", "FIFO", "DELAY", "TRANSACTION")
DEFAULT_RETRY_MAX = 16  # the broker's own default for a subscription group
# The broker rejects writes once the store's filesystem is 90% used (raised to 98 below); refuse
# to start well before, because a broker that starts and then drops every send is worse.
MAX_DISK_USED = 0.85

PROXY_READY = b"rocketmq-proxy startup successfully"
# Names the broker accepts (it also allows '%' and '|', which it reserves for retry/namespace topics).
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,127}$")

_NAMESRV_MAIN = "org.apache.rocketmq.namesrv.NamesrvStartup"
_PROXY_MAIN = "org.apache.rocketmq.proxy.ProxyStartup"
_ADMIN_MAIN = "org.apache.rocketmq.tools.command.MQAdminStartup"


# --- a QueryRoute probe ---------------------------------------------------------------------
# Through the official client's generated stubs, over a blocking channel of our own.

CODE_OK = Code.OK
CODE_TOPIC_NOT_FOUND = Code.TOPIC_NOT_FOUND


@dataclass(frozen=True)
class Route:
    """What the proxy answered to QueryRoute for one topic."""

    code: int
    message: str
    queues: int
    message_types: frozenset[str]

    @property
    def ok(self) -> bool:
        return self.code == CODE_OK and self.queues > 0


def _probe_metadata() -> tuple[tuple[str, str], ...]:
    # The proxy rejects calls without the client headers that every 5.x SDK sends.
    return (
        ("x-mq-language", "PYTHON"),
        ("x-mq-client-id", f"ordermesh-probe-{uuid.uuid4().hex[:12]}"),
        ("x-mq-protocol", "v2"),
        ("x-mq-client-version", "5.0.0"),
    )


def _probe_channel(endpoint: str) -> grpc.Channel:
    # Short reconnect backoff: the default grows to minutes, and a probe that starts while the
    # proxy is still binding would then sleep through the moment it becomes ready.
    return grpc.insecure_channel(
        endpoint,
        options=[
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ],
    )


def _query_route_on(channel: grpc.Channel, endpoint: str, topic: str, timeout: float) -> Route:
    host, _, port = endpoint.rpartition(":")
    request = QueryRouteRequest(
        topic=Resource(name=topic),
        endpoints=Endpoints(scheme=AddressScheme.IPv4, addresses=[Address(host=host, port=int(port))]),
    )
    reply: Any = MessagingServiceStub(channel).QueryRoute(request, timeout=timeout, metadata=_probe_metadata())
    types = {MessageType.Name(t) for q in reply.message_queues for t in q.accept_message_types}
    return Route(int(reply.status.code), str(reply.status.message), len(reply.message_queues), frozenset(types))


def query_route(grpc_endpoint: str, topic: str, timeout: float = 2.0) -> Route:
    """One gRPC QueryRoute through the proxy; raises grpc.RpcError when the proxy does not answer."""
    with _probe_channel(grpc_endpoint) as channel:
        return _query_route_on(channel, grpc_endpoint, topic, timeout)


# --- helpers ----------------------------------------------------------------------------


def disk_used_ratio(path: Path) -> float:
    """Used fraction of the filesystem holding ``path``, counted as the broker counts it.

    UtilAll.getDiskPartitionSpaceUsedPercent: used = total - free, over used + usable (what
    ``df`` shows as Use%), so blocks reserved for root count as neither.
    """
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    st = os.statvfs(probe)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    usable = st.f_bavail * st.f_frsize
    return used / (used + usable) if used + usable else 1.0


def _bindable(port: int) -> bool:
    # The wildcard addresses, because the broker's HA port and both proxy ports listen on all
    # interfaces (the JVMs bind IPv6 sockets); SO_REUSEADDR as the JVMs set it, so a port left
    # in TIME_WAIT by a killed broker counts as free (restart() reuses it) while one somebody
    # listens on does not.
    families = [(socket.AF_INET, "0.0.0.0")] + ([(socket.AF_INET6, "::")] if socket.has_ipv6 else [])
    for family, address in families:
        try:
            sock = socket.socket(family)
        except OSError:  # no IPv6 on this host
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"invalid RocketMQ {kind} name {name!r} (letters, digits, '_' and '-', at most 127)")


def _check_topics(topics: Mapping[str, str]) -> None:
    for name, message_type in topics.items():
        _check_name("topic", name)
        if message_type not in MESSAGE_TYPES:
            raise ValueError(f"topic {name}: message type {message_type!r} is not one of {', '.join(MESSAGE_TYPES)}")


def _check_groups(groups: Mapping[str, int]) -> None:
    for name, retry_max in groups.items():
        _check_name("group", name)
        if not 0 <= retry_max <= 1000:
            raise ValueError(f"group {name}: retry max {retry_max} is out of range")


def _topic_config(name: str, message_type: str) -> dict[str, Any]:
    return {
        "topicName": name,
        "readQueueNums": QUEUES,
        "writeQueueNums": QUEUES,
        "perm": 6,  # read + write
        "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": 0,
        "order": False,
        # The proxy checks each send against this (enableTopicMessageTypeCheck).
        "attributes": {"message.type": message_type},
    }


def _group_config(name: str, retry_max: int) -> dict[str, Any]:
    return {
        "groupName": name,
        "consumeEnable": True,
        "consumeBroadcastEnable": False,
        "retryMaxTimes": retry_max,  # the proxy hands clients retryMaxTimes + 1 as their max attempts
        "retryQueueNums": 1,
        "brokerId": 0,
        "whichBrokerWhenConsumeSlowly": 1,
        "notifyConsumerIdsChangedEnable": True,
    }


def _merge_table(path: Path, table: str, entries: Mapping[str, dict[str, Any]]) -> None:
    """Add missing entries to a broker config file (only ever called while the broker is down).

    On the first start the file does not exist yet and the broker merges its system topics
    and groups in; on a later start it holds the broker's own state, which is kept as is.
    """
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    current = data.setdefault(table, {})
    missing = {name: entry for name, entry in entries.items() if name not in current}
    if not missing and path.exists():
        return
    current.update(missing)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _tail(path: Path, lines: int) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass(frozen=True)
class Ports:
    namesrv: int
    broker: int  # the broker also listens on broker - 2 (fast channel) and broker + 1 (HA)
    proxy_grpc: int
    proxy_remoting: int

    def all(self) -> list[int]:
        return [self.namesrv, self.broker - 2, self.broker, self.broker + 1, self.proxy_grpc, self.proxy_remoting]


# --- the server -------------------------------------------------------------------------


class RocketMQServer:
    """Name server + proxy (broker in-process) with their store and logs under ``workdir``.

    ``topics`` maps name -> message type (NORMAL, FIFO, DELAY, TRANSACTION) and ``groups``
    maps consumer group -> retry max; both are written into the broker's config files before
    it starts, so they exist from its first second on (no admin-tool JVM per topic).
    """

    def __init__(
        self,
        workdir: Path,
        topics: dict[str, str] | None = None,
        groups: dict[str, int] | None = None,
        *,
        namesrv_port: int | None = None,
        broker_port: int | None = None,
        proxy_grpc_port: int | None = None,
        proxy_remoting_port: int | None = None,
        lib_dir: Path | None = None,
        java: str | None = None,
        proxy_heap: tuple[str, str] = ("512m", "1g"),
        broker_settings: Mapping[str, object] | None = None,
        proxy_settings: Mapping[str, object] | None = None,
    ) -> None:
        self.workdir = workdir.absolute()  # broker.conf needs absolute store paths
        self.topics = dict(topics or {})
        self.groups = dict(groups or {})
        _check_topics(self.topics)
        _check_groups(self.groups)
        self._wanted = (namesrv_port, broker_port, proxy_grpc_port, proxy_remoting_port)
        self.lib_dir = lib_dir or DEFAULT_LIB
        self.java = java
        self.proxy_heap = proxy_heap
        # Merged over the defaults below, e.g. {"minInvisibleTimeMillsForRecv": 1000} for a test
        # that wants fast redelivery (the proxy rejects invisible durations under 10 s otherwise).
        self.broker_settings = dict(broker_settings or {})
        self.proxy_settings = dict(proxy_settings or {})
        self.ports: Ports | None = None
        self.namesrv: ManagedProcess | None = None
        self.proxy: ManagedProcess | None = None

    # -- addresses

    def _require_ports(self) -> Ports:
        if self.ports is None:
            raise RuntimeError("RocketMQServer has no ports yet: call start() first")
        return self.ports

    @property
    def grpc_endpoint(self) -> str:
        """What 5.x clients use as ClientConfiguration endpoints."""
        return f"{HOST}:{self._require_ports().proxy_grpc}"

    @property
    def namesrv_address(self) -> str:
        """For remoting clients and mqadmin (``-n``)."""
        return f"{HOST}:{self._require_ports().namesrv}"

    @property
    def remoting_endpoint(self) -> str:
        """The proxy's remoting port, for 4.x-style clients."""
        return f"{HOST}:{self._require_ports().proxy_remoting}"

    @property
    def broker_address(self) -> str:
        return f"{HOST}:{self._require_ports().broker}"

    @property
    def store_dir(self) -> Path:
        return self.workdir / "store"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs" / "rocketmqlogs"

    @property
    def pids(self) -> list[int]:
        """Process ids of the JVMs that are still running."""
        return [p.proc.pid for p in (self.namesrv, self.proxy) if p is not None and p.proc is not None and p.alive]

    def dead(self) -> list[str]:
        """Names of the JVMs that were started and have exited since."""
        return [p.name for p in (self.namesrv, self.proxy) if p is not None and p.proc is not None and not p.alive]

    # -- start / stop

    def start(self, timeout: float = 120.0) -> RocketMQServer:
        """Start both JVMs and return once a client can route to the first topic.

        Raises RuntimeError (with the tail of the logs) when a JVM dies or ``timeout`` passes;
        both JVMs are stopped again then.
        """
        if self.pids:
            raise RuntimeError(f"RocketMQ in {self.workdir} is already running")
        self.namesrv = self.proxy = None  # forget a previous run's exited JVMs (dead() reports them)
        deadline = time.monotonic() + timeout
        java = self._java()
        self._check_jars()
        self._check_disk()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = self._allocate_ports()
        self._write_configs(self.ports)
        _merge_table(
            self.store_dir / "config" / "topics.json",
            "topicConfigTable",
            {name: _topic_config(name, kind) for name, kind in self.topics.items()},
        )
        _merge_table(
            self.store_dir / "config" / "subscriptionGroup.json",
            "subscriptionGroupTable",
            {name: _group_config(name, retry) for name, retry in self.groups.items()},
        )
        try:
            self._start_namesrv(java, deadline)
            self._start_proxy(java, deadline)
            self._wait_routable(deadline)
        except BaseException:
            # also on KeyboardInterrupt: the JVMs run in their own sessions and would outlive us
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """Graceful: the proxy first (it unregisters the broker, 8-11 s), then the name server."""
        if self.proxy is not None:
            self.proxy.stop(25.0)
        if self.namesrv is not None:
            self.namesrv.stop(15.0)

    def kill(self) -> None:
        """SIGKILL both JVMs, as a crash would; the store keeps its ``abort`` marker."""
        for process in (self.proxy, self.namesrv):
            if process is not None:
                process.signal(signal.SIGKILL)
        for process in (self.proxy, self.namesrv):
            if process is not None:
                process.wait(10.0)
                process.stop()  # closes the log file

    def restart(self, timeout: float = 120.0) -> RocketMQServer:
        """Start again on the same ports and store (after stop(), kill() or while running)."""
        if self.pids:
            self.stop()
        return self.start(timeout)

    def __enter__(self) -> RocketMQServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals

    def _java(self) -> str:
        java = self.java or shutil.which("java")
        if java is None:
            raise RuntimeError("java not found: RocketMQ needs a JDK 17 (apt-get install openjdk-17-jre-headless)")
        return java

    def _check_jars(self) -> None:
        if not any(self.lib_dir.glob("rocketmq-proxy-*.jar")):
            raise RuntimeError(f"no RocketMQ jars in {self.lib_dir}: {SETUP_HINT}")

    def _check_disk(self) -> None:
        used = disk_used_ratio(self.workdir)
        if used > MAX_DISK_USED:
            raise RuntimeError(
                f"the filesystem holding {self.workdir} is {used:.0%} used (limit {MAX_DISK_USED:.0%}): "
                "the RocketMQ broker rejects every write near a full disk; free some space first"
            )

    def _allocate_ports(self) -> Ports:
        if self.ports is not None:  # restart: the same ports, so clients keep their endpoint
            ports = self.ports
        else:
            taken: set[int] = {p for p in self._wanted if p is not None}
            ns, broker, grpc_port, remoting = self._wanted
            if broker is not None:
                taken.update((broker - 2, broker + 1))

            def pick(offsets: tuple[int, ...] = (0,)) -> int:
                for _ in range(500):
                    base = free_port()
                    group = [base + o for o in offsets]
                    if all(1024 < p < 65536 and p not in taken and _bindable(p) for p in group):
                        taken.update(group)
                        return base
                raise RuntimeError("could not find free ports for RocketMQ")

            ports = Ports(
                namesrv=ns or pick(),
                broker=broker or pick((-2, 0, 1)),
                proxy_grpc=grpc_port or pick(),
                proxy_remoting=remoting or pick(),
            )
        busy = [p for p in ports.all() if not _bindable(p)]
        if busy:
            raise RuntimeError(f"ports in use, RocketMQ cannot start: {', '.join(map(str, busy))}")
        return ports

    def _write_configs(self, ports: Ports) -> None:
        namesrv = f"{HOST}:{ports.namesrv}"
        (self.workdir / "namesrv.properties").write_text(f"listenPort={ports.namesrv}\nbindAddress={HOST}\n")
        broker = {
            "brokerClusterName": CLUSTER,
            "brokerName": BROKER_NAME,
            "brokerId": 0,
            "brokerRole": "ASYNC_MASTER",
            "flushDiskType": "ASYNC_FLUSH",
            "brokerIP1": HOST,
            "brokerIP2": HOST,  # defaults to the machine's address otherwise (HA registration)
            "bindAddress": HOST,
            "namesrvAddr": namesrv,  # the in-process broker reads this one, not the proxy's -n
            "listenPort": ports.broker,
            "storePathRootDir": self.store_dir,
            "storePathCommitLog": self.store_dir / "commitlog",
            "mappedFileSizeCommitLog": 64 * 1024 * 1024,  # 1 GiB by default, per file
            "autoCreateTopicEnable": "true",
            "autoCreateSubscriptionGroup": "true",
            # Dev and CI disks run fuller than servers; _check_disk() guards the start instead.
            "diskMaxUsedSpaceRatio": 95,
            "diskSpaceCleanForciblyRatio": 95,
            "diskSpaceWarningLevelRatio": 98,
            **self.broker_settings,
        }
        (self.workdir / "broker.conf").write_text("".join(f"{k}={v}\n" for k, v in broker.items()))
        proxy = {
            "rocketMQClusterName": CLUSTER,
            "namesrvAddr": namesrv,
            "grpcServerPort": ports.proxy_grpc,
            "remotingListenPort": ports.proxy_remoting,
            # The proxy caches routes and topic/group configs, a miss included, and refreshes them
            # only 20 s after loading: a topic queried once before it was created (ensure_topics
            # does so, and so may an app's client) stayed unroutable for up to 20 s after the
            # create. A refresh after 1 s costs a name-server lookup per topic in use per second.
            "topicRouteServiceCacheRefreshSeconds": 1,
            "topicConfigCacheRefreshSeconds": 1,
            "subscriptionGroupConfigCacheRefreshSeconds": 1,
            **self.proxy_settings,
        }
        (self.workdir / "rmq-proxy.json").write_text(json.dumps(proxy, indent=2) + "\n")

    def _jvm(self, java: str, heap: tuple[str, str], role: str, main: str) -> list[str]:
        return [
            java,
            f"-Xms{heap[0]}",
            f"-Xmx{heap[1]}",
            # With every jar on one classpath the wrong logback config wins unless named.
            f"-Drmq.logback.configurationFile=rmq.{role}.logback.xml",
            # Mandatory (the name server exits 254 without it); nothing is read from there.
            f"-Drocketmq.home.dir={self.workdir}",
            # Where logs, the name server's kvConfig and client state go.
            f"-Duser.home={self.workdir}",
            "-cp",
            f"{self.lib_dir}/*",
            main,
        ]

    def _launch(self, name: str, argv: list[str]) -> tuple[ManagedProcess, int]:
        log = self.workdir / f"{name}.out"
        offset = log.stat().st_size if log.exists() else 0  # the log is appended to across restarts
        process = ManagedProcess(f"rocketmq-{name}", argv, log)
        process.start()
        return process, offset

    def _start_namesrv(self, java: str, deadline: float) -> None:
        argv = [
            *self._jvm(java, ("256m", "256m"), "namesrv", _NAMESRV_MAIN),
            "-c",
            str(self.workdir / "namesrv.properties"),
        ]
        self.namesrv, _ = self._launch("namesrv", argv)
        port = self._require_ports().namesrv
        # The proxy must wait: a broker that cannot register at once is routable only after its
        # next periodic registration, 30 s later.
        self._wait(lambda: port_open(port), deadline, f"the name server on port {port}")

    def _start_proxy(self, java: str, deadline: float) -> None:
        argv = [
            *self._jvm(java, self.proxy_heap, "proxy", _PROXY_MAIN),
            "-pm", "local",
            "-pc", str(self.workdir / "rmq-proxy.json"),
            "-bc", str(self.workdir / "broker.conf"),
            "-n", self.namesrv_address,
        ]  # fmt: skip
        self.proxy, offset = self._launch("proxy", argv)
        log = self.proxy.log_path

        def ready() -> bool:
            with log.open("rb") as f:
                f.seek(offset)
                return PROXY_READY in f.read()

        # Printed once the broker has registered with the name server; an open port is not enough.
        self._wait(ready, deadline, "'rocketmq-proxy startup successfully'")

    def _wait_routable(self, deadline: float) -> None:
        endpoint = self.grpc_endpoint
        topic = next(iter(self.topics), None)
        last = "no answer"
        with _probe_channel(endpoint) as channel:

            def routable() -> bool:
                nonlocal last
                try:
                    route = _query_route_on(channel, endpoint, topic or "OrdermeshProbe", 2.0)
                except grpc.RpcError as error:
                    last = f"gRPC {error.code().name}"  # the call's errors are grpc.Call too
                    return False
                last = f"code {route.code} {route.message}"
                # Without a topic of ours, any status from the proxy shows it reaches the name server.
                return route.ok if topic is not None else route.code != 0

            what = f"a gRPC route to {topic}" if topic else "the proxy to answer QueryRoute"
            self._wait(routable, deadline, what, lambda: last)

    def _wait(
        self, predicate: Callable[[], bool], deadline: float, what: str, detail: Callable[[], str] | None = None
    ) -> None:
        while True:
            if predicate():
                return
            if dead := self.dead():
                raise RuntimeError(f"RocketMQ {', '.join(dead)} exited while waiting for {what}\n{self.log_tails()}")
            if time.monotonic() > deadline:
                extra = f" (last: {detail()})" if detail else ""
                raise RuntimeError(f"RocketMQ: timed out waiting for {what}{extra}\n{self.log_tails()}")
            time.sleep(0.1)

    def log_tails(self, lines: int = 15) -> str:
        """The end of every output and log file, for error messages."""
        parts = []
        for path in (
            self.workdir / "namesrv.out",
            self.workdir / "proxy.out",
            self.log_dir / "namesrv.log",
            self.log_dir / "proxy.log",
            self.log_dir / "broker.log",
        ):
            if text := _tail(path, lines):
                parts.append(f"--- {path}\n{text}")
        return "\n".join(parts)


# --- topics on a running broker ---------------------------------------------------------


# What updateTopic / updateSubGroup print per broker on success; on failure they print an
# "[error] ..." line or a stack trace, and exit 0 all the same.
_ADMIN_SUCCESS = re.compile(r"create (topic|subscription group) to \S+ success")


def _admin(server: RocketMQServer, *args: str, timeout: float) -> str:
    java = server._java()
    argv = [
        java,
        "-Xms64m",
        "-Xmx256m",
        "-Drmq.logback.configurationFile=rmq.tools.logback.xml",
        f"-Drocketmq.home.dir={server.workdir}",
        f"-Duser.home={server.workdir}",
        "-cp",
        f"{server.lib_dir}/*",
        _ADMIN_MAIN,
        *args,
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired:
        return f"mqadmin {args[0]} timed out after {timeout:.0f}s"
    return done.stdout + done.stderr


def ensure_topics(
    server: RocketMQServer,
    topics: dict[str, str],
    groups: dict[str, int] | None = None,
    *,
    timeout: float = 120.0,
) -> None:
    """Create (or update) topics and consumer groups on a running broker with mqadmin.

    Idempotent. A topic that already routes with the wanted message type costs nothing; all
    others cost one admin JVM (4-7 s), run three at a time. Returns once every topic routes
    through the proxy. mqadmin exits 0 even when it failed, so its output is checked.
    """
    groups = groups or {}
    _check_topics(topics)
    _check_groups(groups)
    if not server.pids:
        raise RuntimeError("ensure_topics needs a running RocketMQServer")
    endpoint, namesrv = server.grpc_endpoint, server.namesrv_address

    def missing(topic: str, message_type: str) -> bool:
        try:
            route = query_route(endpoint, topic)
        except grpc.RpcError:
            return True
        return not (route.ok and message_type in route.message_types)

    jobs: list[tuple[str, list[str]]] = []
    for topic, message_type in topics.items():
        if missing(topic, message_type):
            args = ["updateTopic", "-n", namesrv, "-c", CLUSTER, "-t", topic, "-r", str(QUEUES), "-w", str(QUEUES)]
            jobs.append((f"topic {topic}", [*args, "-a", f"+message.type={message_type}"]))
    for group, retry_max in groups.items():
        jobs.append(
            (f"group {group}", ["updateSubGroup", "-n", namesrv, "-c", CLUSTER, "-g", group, "-r", str(retry_max)])
        )

    deadline = time.monotonic() + timeout
    # Three at a time: each is mostly a JVM start (4 s alone), three together took 7.6 s on two cores.
    with ThreadPoolExecutor(max_workers=3) as pool:
        outputs = list(pool.map(lambda job: _admin(server, *job[1], timeout=timeout), jobs))
    for (what, _), output in zip(jobs, outputs, strict=True):
        if not _ADMIN_SUCCESS.search(output):
            raise RuntimeError(f"mqadmin could not create {what} on {namesrv}:\n{output.strip()[-2000:]}")

    for topic, message_type in topics.items():
        while missing(topic, message_type):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} was created but does not route through {endpoint}")
            time.sleep(0.1)


# --- python -m mesh.local.rocketmq ------------------------------------------------------


def _topic_arg(text: str) -> tuple[str, str]:
    name, _, kind = text.partition(":")
    return name, (kind or "NORMAL").upper()


def _group_arg(text: str) -> tuple[str, int]:
    name, _, retry = text.partition(":")
    return name, int(retry) if retry else DEFAULT_RETRY_MAX


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mesh.local.rocketmq",
        description="Run a RocketMQ 5 name server + proxy (broker in-process) on loopback until Ctrl-C.",
    )
    parser.add_argument("--workdir", type=Path, default=Path("var/rocketmq"), help="store, logs and configs")
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        type=_topic_arg,
        metavar="NAME[:TYPE]",
        help="topic to create, TYPE one of NORMAL (default), FIFO, DELAY, TRANSACTION",
    )
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        type=_group_arg,
        metavar="NAME[:RETRY_MAX]",
        help=f"consumer group to create (retry max {DEFAULT_RETRY_MAX} by default)",
    )
    parser.add_argument("--namesrv-port", type=int)
    parser.add_argument("--broker-port", type=int, help="the broker also uses this - 2 and this + 1")
    parser.add_argument("--grpc-port", type=int, help="the proxy's gRPC port, what 5.x clients use")
    parser.add_argument("--remoting-port", type=int, help="the proxy's remoting port")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    try:
        server = RocketMQServer(
            args.workdir,
            dict(args.topic),
            dict(args.group),
            namesrv_port=args.namesrv_port,
            broker_port=args.broker_port,
            proxy_grpc_port=args.grpc_port,
            proxy_remoting_port=args.remoting_port,
        )
    except ValueError as error:
        parser.error(str(error))
    # SIGTERM behaves like Ctrl-C, so it also interrupts a start that is still waiting. SIGINT is
    # set explicitly because a shell starts background jobs with it ignored, and Python keeps that.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 0
    try:
        started = time.monotonic()
        server.start(args.timeout)
        print(
            f"RocketMQ ready in {time.monotonic() - started:.1f}s (workdir {server.workdir})\n"
            f"  gRPC endpoint (5.x clients): {server.grpc_endpoint}\n"
            f"  name server:                 {server.namesrv_address}\n"
            f"  proxy remoting:              {server.remoting_endpoint}\n"
            f"  broker:                      {server.broker_address}\n"
            f"  topics: {', '.join(f'{t}:{k}' for t, k in server.topics.items()) or '-'}\n"
            f"  groups: {', '.join(f'{g}:{r}' for g, r in server.groups.items()) or '-'}\n"
            "Ctrl-C to stop.",
            flush=True,
        )
        while not (dead := server.dead()):
            time.sleep(0.5)
        print(f"stopped unexpectedly: {', '.join(dead)}\n{server.log_tails()}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        pass
    except RuntimeError as error:
        print(f"rocketmq: {error}", file=sys.stderr)
        status = 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave JVMs behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server.pids:
            print("stopping ...", flush=True)
            server.stop()
            print("stopped.", flush=True)
    raise SystemExit(status)


if __name__ == "__main__":
    main()
