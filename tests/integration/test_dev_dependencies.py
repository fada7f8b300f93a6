"""The dev Redis and MariaDB image (`make image`: scripts/image/deps.sh), run with
podman exactly as the chart runs it (devDependencies.enabled=true): the rendered
Deployments are the one source. Their init containers, commands, volumes,
probes and security context become podman flags: uid 10001, a read-only root
filesystem, every capability dropped, no privilege escalation, writes only to
the emptyDir volumes (host directories, world-writable as the kubelet makes
them, kept from the init container to the server), the ConfigMap and the
Secret mounted read-only as rendered. Then Redis answers PING and each account
of the contexts' connection strings reaches its database, through the mesh's
own drivers, and only its database."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import yaml
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from mesh.local.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
PODMAN = str(ROOT / "scripts/image/podman.sh")
CHART = ROOT / "helm/ordermesh"
HELM = str(ROOT / ".tools/bin/helm")
# What every container of the chart asks for; each key is translated below.
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# This VM's runtime cannot raise limits (no CAP_SYS_RESOURCE): explicit ulimits.
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]

pytestmark = pytest.mark.timeout(600)


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    redis_port = free_port()
    database_port = free_port()
    while database_port == redis_port:
        database_port = free_port()
    return {"redis": redis_port, "database": database_port}


@pytest.fixture(scope="module")
def chart(ports: dict[str, int]) -> list[dict[str, Any]]:
    """The chart rendered with the dev dependencies, listening on free ports (the
    containers share the host's network here, as two pods would not)."""
    result = subprocess.run(
        [HELM, "template", "om", str(CHART), "--namespace", "shop", "--kube-version", "1.35.0",
         "--set", "devDependencies.enabled=true", "--set", "image.pullPolicy=Never",
         "--set", f"dependencies.ports.redis={ports['redis']}",
         "--set", f"dependencies.ports.database={ports['database']}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def image(chart: list[dict[str, Any]]) -> str:
    """The image the chart names, made by scripts/image/deps.sh (once per machine)."""
    built = subprocess.run([str(ROOT / "scripts/image/deps.sh")], capture_output=True, text=True, timeout=540, cwd=ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    [name] = {str(c["image"]) for d in _dev_deployments(chart) for c in _containers(d)}
    assert podman("image", "exists", name).returncode == 0, name
    return name


def _dev_deployments(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] in ("om-redis", "om-mariadb")]


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


class Pod:
    """One rendered Deployment's pod, run with podman: its volumes as host directories,
    its init containers to completion, then its one container in the background."""

    def __init__(self, docs: list[dict[str, Any]], name: str, workdir: Path) -> None:
        self.docs = docs
        self.spec = _named(docs, "Deployment", name)["spec"]["template"]["spec"]
        self.volumes: dict[str, Path] = {}
        self.running: list[str] = []
        [self.container] = self.spec["containers"]
        for volume in self.spec["volumes"]:
            path = workdir / volume["name"]
            path.mkdir()
            if "emptyDir" in volume:
                path.chmod(0o777)  # as the kubelet makes an emptyDir
            elif "configMap" in volume:
                self._files(path, _named(docs, "ConfigMap", volume["configMap"]["name"])["data"], 0o644)
            elif "secret" in volume:
                secret = _named(docs, "Secret", volume["secret"]["secretName"])["stringData"]
                # Readable by the pod's fsGroup only, as the kubelet mounts it.
                self._files(path, secret, volume["secret"]["defaultMode"], gid=self.spec["securityContext"]["fsGroup"])
            else:
                raise AssertionError(f"no translation for volume {volume}")
            self.volumes[volume["name"]] = path

    @staticmethod
    def _files(path: Path, data: dict[str, str], mode: int, gid: int = 0) -> None:
        for key, value in data.items():
            (path / key).write_text(value)
            os.chown(path / key, 0, gid)
            (path / key).chmod(mode)

    def flags(self, container: dict[str, Any]) -> list[str]:
        security = container["securityContext"]
        assert security == RESTRICTED, security
        assert not container.get("env") and not container.get("envFrom"), "no environment to translate"
        flags = [
            "--user", f"{security['runAsUser']}:{security['runAsGroup']}",
            "--read-only", "--read-only-tmpfs=false",  # only the volumes are writable
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",  # seccomp: podman's default profile
            "--network", "host",
            "--entrypoint", json.dumps(container["command"]),
            *ULIMITS,
        ]  # fmt: skip
        for mount in container["volumeMounts"]:
            read_only = ":ro" if mount.get("readOnly") else ""
            flags += ["-v", f"{self.volumes[mount['name']]}:{mount['mountPath']}{read_only}"]
        return flags

    def init(self) -> None:
        for container in self.spec.get("initContainers", []):
            name = f"om-{container['name']}-{uuid.uuid4().hex[:8]}"
            try:
                ran = podman(
                    "run", "--name", name, *self.flags(container), container["image"], *container.get("args", [])
                )
            finally:
                podman("rm", "-f", name)
            assert ran.returncode == 0, f"{container['name']}:\n{ran.stdout[-3000:]}{ran.stderr[-3000:]}"

    def start(self) -> str:
        name = f"om-{self.container['name']}-{uuid.uuid4().hex[:8]}"
        self.running.append(name)
        started = podman(
            "run", "-d", "--name", name, *self.flags(self.container), self.container["image"],
            *self.container.get("args", []),
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        return name

    def probe(self, name: str, kind: str) -> bool:
        probe = self.container[kind]
        if "exec" in probe:
            return podman("exec", name, *probe["exec"]["command"], timeout=30).returncode == 0
        port = probe["tcpSocket"]["port"]
        if isinstance(port, str):
            [port] = [p["containerPort"] for p in self.container["ports"] if p["name"] == port]
        with socket.socket() as sock:
            sock.settimeout(probe.get("timeoutSeconds", 1))
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def wait_started(self, name: str) -> None:
        """The startup probe as the kubelet runs it, then liveness and readiness once."""
        startup = self.container["startupProbe"]
        for _ in range(startup["failureThreshold"]):
            if self.probe(name, "startupProbe"):
                break
            time.sleep(startup["periodSeconds"])
        else:
            raise AssertionError(f"never started:\n{podman('logs', name).stderr[-3000:]}")
        assert self.probe(name, "livenessProbe"), podman("logs", name).stderr[-3000:]
        assert self.probe(name, "readinessProbe"), podman("logs", name).stderr[-3000:]

    def stop(self, name: str) -> None:
        """SIGTERM, as the kubelet stops a container: a clean exit, well within the grace."""
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        assert podman("stop", "-t", str(grace), name, timeout=grace + 30).returncode == 0
        state = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert state == "0", (state, podman("logs", name).stderr[-3000:])
        podman("rm", "-f", name)
        self.running.remove(name)

    def remove(self) -> None:
        for name in self.running:
            podman("rm", "-f", "-t", "5", name)


@contextlib.contextmanager
def pod(docs: list[dict[str, Any]], name: str, workdir: Path) -> Iterator[Pod]:
    running = Pod(docs, name, workdir)
    try:
        yield running
    finally:
        running.remove()


def assert_restricted(name: str) -> None:
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    assert podman("exec", name, "touch", "/usr/probe").returncode != 0, "the root filesystem is read-only"
    status = podman("exec", name, "grep", "^CapEff", "/proc/1/status").stdout.split()
    assert status[-1] == "0000000000000000", status


def test_redis_from_the_image_answers_ping_as_the_chart_runs_it(
    image: str, chart: list[dict[str, Any]], ports: dict[str, int], tmp_path: Path
) -> None:
    with pod(chart, "om-redis", tmp_path) as redis_pod:
        redis_pod.init()
        name = redis_pod.start()
        redis_pod.wait_started(name)
        assert_restricted(name)
        client = redis.Redis(host="127.0.0.1", port=ports["redis"], socket_timeout=5)
        try:
            assert client.ping() is True
            client.set("catalog:epoch", "1")
            assert client.get("catalog:epoch") == b"1"
        finally:
            client.close()
        redis_pod.stop(name)


async def assert_each_account_reaches_only_its_database(urls: list[str], port: int) -> None:
    for url in urls:
        parts = urlsplit(url)
        local = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}"))
        engine = create_async_engine(local)
        try:
            async with engine.begin() as conn:
                row = (await conn.execute(text("SELECT DATABASE(), CURRENT_USER()"))).one()
                assert tuple(row) == (parts.path.lstrip("/"), f"{parts.username}@%"), row
                await conn.execute(text("CREATE TABLE probe_grants (id INT PRIMARY KEY)"))
                await conn.execute(text("DROP TABLE probe_grants"))
            async with engine.connect() as conn:
                with pytest.raises(DBAPIError, match="denied"):
                    await conn.execute(text("CREATE DATABASE not_theirs"))
        finally:
            await engine.dispose()


async def test_mariadb_from_the_image_serves_every_account_and_database_as_the_chart_runs_it(
    image: str, chart: list[dict[str, Any]], ports: dict[str, int], tmp_path: Path
) -> None:
    secret = _named(chart, "Secret", "om-ordermesh")["stringData"]
    keys = ("CATALOG_DATABASE_URL", "PAYMENT_DATABASE_URL", "SHIPPING_DATABASE_URL", "ANALYTICS_DATABASE_URL")
    urls = [secret[k] for k in keys]
    urls += secret["ORDER_DATABASE_URLS"].split(",")
    assert sorted(urlsplit(u).path for u in urls) == [
        "/ordermesh_analytics", "/ordermesh_catalog", "/ordermesh_order_0", "/ordermesh_payment", "/ordermesh_shipping"
    ]  # fmt: skip
    with pod(chart, "om-mariadb", tmp_path) as mariadb_pod:
        mariadb_pod.init()
        name = mariadb_pod.start()
        mariadb_pod.wait_started(name)
        assert_restricted(name)
        # Socket and pid file under /tmp, data under /data: the emptyDir volumes.
        assert {p.name for p in mariadb_pod.volumes["tmp"].iterdir()} >= {"mariadb.sock", "mariadb.pid"}
        assert (mariadb_pod.volumes["data"] / "mysql").is_dir()
        await assert_each_account_reaches_only_its_database(urls, ports["database"])
        # A restarted pod keeps its emptyDir: the init container finds the system
        # tables and does nothing, the server starts and runs the init file again.
        mariadb_pod.stop(name)
        mariadb_pod.init()
        name = mariadb_pod.start()
        mariadb_pod.wait_started(name)
        await assert_each_account_reaches_only_its_database(urls, ports["database"])
        mariadb_pod.stop(name)
