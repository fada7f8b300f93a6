"""Topics and consumer groups on a running broker, through the admin tool."""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from mesh.local.rocketmq.config import ADMIN_MAIN, CLUSTER, QUEUES, check_groups, check_topics
from mesh.local.rocketmq.probe import (
    query_route,
)
from mesh.local.rocketmq.server import RocketMQServer

# What updateTopic / updateSubGroup print per broker on success; on failure they print an
# "[error] ..." line or a stack trace, and exit 0 all the same.
_ADMIN_SUCCESS = re.compile(r"create (topic|subscription group) to \S+ success")


def _admin(server: RocketMQServer, *args: str, timeout: float) -> str:
    java = server.java_binary()
    argv = [
        java,
        "-Xms64m",
        "-Xmx256m",
        "-Drmq.logback.configurationFile=rmq.tools.logback.xml",
        f"-Drocketmq.home.dir={server.workdir}",
        f"-Duser.home={server.workdir}",
        "-cp",
        f"{server.lib_dir}/*",
        ADMIN_MAIN,
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
    check_topics(topics)
    check_groups(groups)
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
