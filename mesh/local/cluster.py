"""A local Kubernetes cluster: a real etcd and kube-apiserver (with its
admission, Pod Security included), controller-manager and scheduler, and one
node: a real one (containerd, kubelet, kube-proxy, CoreDNS: mesh.local.node)
where the machine can run it, else kwok playing the node (pods become Running
and Ready without running). Built by ``scripts/cluster/build.sh`` into
.tools/cluster.

    python -m mesh.local.cluster up [--kwok]  # `make cluster`: starts, writes var/cluster/kubeconfig
    python -m mesh.local.cluster load IMAGE   # copies a podman image into the real node
    python -m mesh.local.cluster down         # `make cluster-down`: stops it, removes what it created

Tests use :class:`LocalCluster` directly (started and stopped by a fixture).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from mesh.local.node import NODE_IP, SERVICE_CIDR, RealNode, drain, node_ready, sweep, unsupported_reason
from mesh.local.procs import ManagedProcess, free_port, require_binary, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".tools" / "cluster" / "bin"
KWOK_VERSION = "v0.8.0"
# The one fake node; pods schedule onto it and kwok reports them Running and Ready.
KWOK_NODE = "kwok-node-0"
NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": KWOK_NODE,
        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        "labels": {"kubernetes.io/hostname": KWOK_NODE, "type": "kwok"},
    },
    "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
}


NodeKind = Literal["kwok", "real"]
# What `make cluster` loads into a real node: `make image` builds both.
IMAGES = ["localhost/ordermesh:dev", "localhost/ordermesh-deps:bookworm-1"]


class LocalCluster:
    def __init__(self, workdir: Path, node: NodeKind = "kwok") -> None:
        self.workdir = workdir.absolute()
        self.kubeconfig = self.workdir / "kubeconfig"
        self.processes: list[ManagedProcess] = []
        self.api_port = 0
        self.node = RealNode(self.workdir, BIN) if node == "real" else None
        # The API server listens where the node and its pods reach it: the bridge
        # address with a real node (never every interface), loopback otherwise.
        self.api_host = NODE_IP if node == "real" else "127.0.0.1"

    def binary(self, name: str) -> str:
        path = BIN / name
        if not path.exists():
            raise RuntimeError(f"{name} not built: run scripts/cluster/build.sh (make cluster builds it)")
        return str(path)

    def kubectl(self, *args: str, timeout: float = 60, input_: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [self.binary("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input_)

    def start(self, timeout: float = 60) -> LocalCluster:
        pki, logs = self.workdir / "pki", self.workdir / "logs"
        pki.mkdir(parents=True, exist_ok=True)
        openssl = require_binary("openssl", "apt-get install openssl")
        subprocess.run([openssl, "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True)
        subprocess.run(
            [openssl, "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
            check=True,
            capture_output=True,
        )
        token = secrets.token_hex(16)
        (pki / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
        etcd_port, peer_port, self.api_port = free_port(), free_port(), free_port()
        self._write_kubeconfig(token)
        (self.workdir / "node").write_text("real" if self.node else "kwok")
        if self.node is not None:
            self.node.create_bridge()

        self._run(
            "etcd",
            [
                self.binary("etcd"), "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                "--quota-backend-bytes", str(512 * 1024 * 1024),
            ],
            logs,
        )  # fmt: skip
        self._run(
            "kube-apiserver",
            [
                self.binary("kube-apiserver"),
                "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
                "--bind-address", self.api_host, "--advertise-address", self.api_host,
                "--kubelet-preferred-address-types", "InternalIP,Hostname",
                "--secure-port", str(self.api_port), "--cert-dir", str(pki),
                "--token-auth-file", str(pki / "tokens.csv"),
                "--authorization-mode", "RBAC",
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", str(pki / "sa.pub"),
                "--service-account-signing-key-file", str(pki / "sa.key"),
                "--allow-privileged=false",
            ],
            logs,
        )  # fmt: skip
        wait_until(lambda: self.kubectl("get", "--raw", "/readyz", timeout=5).returncode == 0, timeout, "apiserver")
        controller_port, scheduler_port = free_port(), free_port()
        self._run(
            "kube-controller-manager",
            [
                self.binary("kube-controller-manager"), "--kubeconfig", str(self.kubeconfig),
                "--service-account-private-key-file", str(pki / "sa.key"),
                "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", str(controller_port),
                "--controllers", "*,-nodeipam",
                # The API server's self-signed CA, so kube-root-ca.crt lets in-cluster
                # clients (CoreDNS) verify it.
                "--root-ca-file", str(pki / "apiserver.crt"),
            ],
            logs,
        )  # fmt: skip
        self._run(
            "kube-scheduler",
            [
                self.binary("kube-scheduler"), "--kubeconfig", str(self.kubeconfig), "--leader-elect=false",
                "--bind-address", "127.0.0.1", "--secure-port", str(scheduler_port),
            ],
            logs,
        )  # fmt: skip
        if self.node is not None:
            self.node.start(self.kubeconfig, self.kubectl, timeout)
            self._wait_default_service_account(timeout)
            return self
        stages = self.workdir / "kwok-stages.yaml"
        stages.write_text(_kwok_stages())
        self._run(
            "kwok",
            [
                self.binary("kwok"), "--kubeconfig", str(self.kubeconfig), "--config", str(stages),
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
                "--cidr", "10.244.0.0/16", "--node-ip", "10.0.0.10",
            ],
            logs,
        )  # fmt: skip
        created = self.kubectl("apply", "-f", "-", input_=json.dumps(NODE))
        if created.returncode != 0:
            raise RuntimeError(f"cannot create the kwok node: {created.stderr}")
        wait_until(lambda: node_ready(self.kubectl, KWOK_NODE), timeout, "the kwok node to be Ready")
        self._wait_default_service_account(timeout)
        return self

    def _wait_default_service_account(self, timeout: float) -> None:
        wait_until(lambda: self.kubectl("get", "serviceaccount", "default").returncode == 0, timeout, "the default SA")

    def _write_kubeconfig(self, token: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": f"https://{self.api_host}:{self.api_port}",
                        "insecure-skip-tls-verify": True,
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }
        self.kubeconfig.write_text(json.dumps(config))
        self.kubeconfig.chmod(0o600)

    def _run(self, name: str, argv: list[str], logs: Path) -> None:
        process = ManagedProcess(name, argv, logs / f"{name}.log")
        process.start()
        self.processes.append(process)

    def pids(self) -> list[int]:
        node = self.node.processes if self.node is not None else []
        return [p.proc.pid for p in [*self.processes, *node] if p.proc is not None]

    def stop(self) -> None:
        if self.node is not None:
            if self.node.processes and self.processes:
                drain(self.kubectl)
            self.node.stop()
        for process in reversed(self.processes):
            process.stop(timeout=15)
        self.processes.clear()
        if self.node is not None:
            sweep(self.workdir, BIN)


def _kwok_stages() -> str:
    """kwok's own "fast" node and pod stages, from its module (the Go module cache)."""
    gomodcache = subprocess.run(
        [require_binary("go", "install Go"), "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    base = Path(gomodcache) / f"sigs.k8s.io/kwok@{KWOK_VERSION}" / "kustomize" / "stage"
    files = sorted((base / "node" / "fast").glob("*.yaml")) + sorted((base / "pod" / "fast").glob("*.yaml"))
    if not files:
        raise RuntimeError(f"kwok's stages not found under {base}: run scripts/cluster/build.sh")
    return "\n---\n".join(f.read_text() for f in files)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    workdir = ROOT / "var" / "cluster"
    pidfile = workdir / "pids"
    if command == "up":
        reason = unsupported_reason()
        if "--kwok" in sys.argv or reason is not None:
            print(f"cluster: kwok node ({reason or 'asked for'})")
        if pidfile.exists() and any(_alive(int(p)) for p in pidfile.read_text().split()):
            print(f"a cluster is already running (pids in {pidfile}); `make cluster-down` stops it")
            raise SystemExit(1)
        cluster = LocalCluster(workdir, "kwok" if "--kwok" in sys.argv or reason is not None else "real")
        try:
            cluster.start()
        except (RuntimeError, TimeoutError) as error:
            cluster.stop()
            print(f"cluster: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        pidfile.write_text(" ".join(map(str, cluster.pids())))
        if cluster.node is not None:
            _load_images(cluster.node, IMAGES)
        print(f"cluster is up: export KUBECONFIG={cluster.kubeconfig}\n`make cluster-down` stops it.")
        os._exit(0)  # leave the processes running (they are in sessions of their own)
    elif command == "load":  # python -m mesh.local.cluster load IMAGE...: podman images into the node
        if not (workdir / "node").exists() or (workdir / "node").read_text() != "real":
            print("no real-node cluster is running (make cluster starts one)", file=sys.stderr)
            raise SystemExit(1)
        _load_images(RealNode(workdir, BIN), sys.argv[2:])
    elif command == "down":
        pids = [int(p) for p in pidfile.read_text().split()] if pidfile.exists() else []
        real = (workdir / "node").exists() and (workdir / "node").read_text() == "real"
        if real and pids:
            drain(LocalCluster(workdir).kubectl)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        removed = sweep(workdir, BIN) if real else []
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
        print(f"cluster stopped ({len(pids)} processes), {workdir} removed")
        for leftover in removed:
            print(f"  removed {leftover}")
    else:
        print("usage: python -m mesh.local.cluster [up [--kwok] | load IMAGE... | down]", file=sys.stderr)
        raise SystemExit(2)


def _load_images(node: RealNode, images: list[str]) -> None:
    for image in images:
        try:
            node.load_image(image)
        except RuntimeError as error:
            print(f"cluster: {image} not loaded: {error}", file=sys.stderr)
            continue
        print(f"cluster: {image} loaded into the node (imagePullPolicy Never or IfNotPresent)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    main()
