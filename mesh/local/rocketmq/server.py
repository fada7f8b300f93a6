"""RocketMQServer: the name server and proxy JVMs, their configs, ports and lifecycle (see the package)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from mesh.local.procs import ManagedProcess, bindable, free_port, port_open, port_owner
from mesh.local.rocketmq.config import (
    BROKER_NAME,
    CLUSTER,
    HOST,
    MAX_DISK_USED,
    NAMESRV_MAIN,
    PROXY_MAIN,
    check_groups,
    check_topics,
    disk_used_ratio,
    group_config,
    merge_table,
    topic_config,
)
from mesh.local.rocketmq.probe import (
    probe_channel,
    query_route_on,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_LIB = REPO_ROOT / ".tools" / "rocketmq" / "lib"
SETUP_HINT = "run 'bash scripts/setup/rocketmq.sh'"

PROXY_READY = b"rocketmq-proxy startup successfully"


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
        die_with_parent: bool = False,
        broker_settings: Mapping[str, object] | None = None,
        proxy_settings: Mapping[str, object] | None = None,
    ) -> None:
        self.workdir = workdir.absolute()  # broker.conf needs absolute store paths
        self.topics = dict(topics or {})
        self.groups = dict(groups or {})
        check_topics(self.topics)
        check_groups(self.groups)
        self._wanted = (namesrv_port, broker_port, proxy_grpc_port, proxy_remoting_port)
        self.lib_dir = lib_dir or DEFAULT_LIB
        self.java = java
        self.proxy_heap = proxy_heap
        self.die_with_parent = die_with_parent  # see mesh.local.procs
        # Merged over the defaults below (broker.conf keys and rmq-proxy.json keys).
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
        java = self.java_binary()
        self._check_jars()
        self._check_disk()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = self._allocate_ports()
        self._write_configs(self.ports)
        merge_table(
            self.store_dir / "config" / "topics.json",
            "topicConfigTable",
            {name: topic_config(name, kind) for name, kind in self.topics.items()},
        )
        merge_table(
            self.store_dir / "config" / "subscriptionGroup.json",
            "subscriptionGroupTable",
            {name: group_config(name, retry) for name, retry in self.groups.items()},
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

    def java_binary(self) -> str:
        """The java to run the broker and the admin tool with."""
        java = self.java or shutil.which("java")
        if java is None:
            raise RuntimeError("java not found: RocketMQ needs a JDK 17 (apt-get install openjdk-17-jre-headless)")
        return java

    # -- internals

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
                    if all(1024 < p < 65536 and p not in taken and bindable(p) for p in group):
                        taken.update(group)
                        return base
                raise RuntimeError("could not find free ports for RocketMQ")

            ports = Ports(
                namesrv=ns or pick(),
                broker=broker or pick((-2, 0, 1)),
                proxy_grpc=grpc_port or pick(),
                proxy_remoting=remoting or pick(),
            )
        busy = [f"{p} ({port_owner(p) or 'unknown'})" for p in ports.all() if not bindable(p)]
        if busy:
            raise RuntimeError(
                f"ports in use, RocketMQ cannot start: {', '.join(busy)}; a leftover of an earlier run? stop it first"
            )
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
            # The mesh's consumers make a failed message visible again after 1 s, doubling per
            # attempt (RocketConsumerConfig); the proxy's default floor would be 10 s.
            "minInvisibleTimeMillsForRecv": 1000,
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
        process = ManagedProcess(f"rocketmq-{name}", argv, log, die_with_parent=self.die_with_parent)
        process.start()
        return process, offset

    def _start_namesrv(self, java: str, deadline: float) -> None:
        argv = [
            *self._jvm(java, ("256m", "256m"), "namesrv", NAMESRV_MAIN),
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
            *self._jvm(java, self.proxy_heap, "proxy", PROXY_MAIN),
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
        with probe_channel(endpoint) as channel:

            def routable() -> bool:
                nonlocal last
                try:
                    route = query_route_on(channel, endpoint, topic or "OrdermeshProbe", 2.0)
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
