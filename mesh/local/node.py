"""A real single-node Kubernetes node on this machine: containerd with the CNI
bridge, a kubelet, kube-proxy (iptables) and CoreDNS, joined to the control
plane of :mod:`mesh.local.cluster`.

Pods really run (runc), with their probes, security contexts and cgroups;
Services get ClusterIPs and DNS names; ``kubectl port-forward``, ``logs`` and
``exec`` work. Everything this creates is named here and removed by
:func:`sweep` (``make cluster-down``): the bridge, its iptables chains, the
pods' network namespaces and mounts, the kubepods cgroups.

The CNI bridge does not enforce NetworkPolicies: they are accepted by the API
server and have no effect on this node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Protocol

from mesh.local.procs import ManagedProcess, free_port, require_binary, wait_until

NODE_NAME = "ordermesh-node"
BRIDGE = "omesh0"
# The node's address is the bridge's: the kubelet refuses a loopback node IP,
# and pods reach the API server (Service "kubernetes") through it.
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
DNS_IP = "10.96.0.10"
PAUSE_IMAGE = "localhost/pause:3.10"
CNI_BIN = Path("/usr/lib/cni")
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")
# The chains this node's pieces create: kube-proxy's, and the CNI plugins' (ipMasq, portmap).
CHAIN_PREFIXES = ("KUBE-", "CNI-")


def unsupported_reason() -> str | None:
    """Why this machine cannot run a real node, or None when it can."""
    if os.geteuid() != 0:
        return "a kubelet needs root (network namespaces, cgroups, mounts)"
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "ip", "iptables", "podman"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"{tool} is not installed (make test installs containerd, runc, podman from Debian)"
    if not (CNI_BIN / "bridge").exists():
        return f"no CNI plugins in {CNI_BIN} (Debian package containernetworking-plugins)"
    if not (CGROUP_ROOT / "memory").is_dir() and not (CGROUP_ROOT / "cgroup.controllers").exists():
        return "no cgroup filesystem at /sys/fs/cgroup"
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        return f"bridge {BRIDGE} exists: another real-node cluster runs here (make cluster-down stops it)"
    return None


class RealNode:
    """containerd + kubelet + kube-proxy + CoreDNS, started after the control plane."""

    def __init__(self, workdir: Path, bin_dir: Path) -> None:
        self.workdir = workdir
        self.bin = bin_dir
        self.socket = workdir / "containerd" / "containerd.sock"
        self.processes: list[ManagedProcess] = []

    # -- before the API server: it binds to the bridge address ---------------------
    def create_bridge(self) -> None:
        ip = require_binary("ip")
        _write_state(self.workdir, _chains())  # what existed before, so the sweep removes only ours
        subprocess.run([ip, "link", "add", BRIDGE, "type", "bridge"], check=True, capture_output=True)
        subprocess.run([ip, "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE], check=True, capture_output=True)
        subprocess.run([ip, "link", "set", BRIDGE, "up"], check=True, capture_output=True)

    # -- after the control plane ----------------------------------------------------
    def start(self, kubeconfig: Path, kubectl: KubectlRun, timeout: float) -> None:
        logs = self.workdir / "logs"
        self._start_containerd(logs)
        wait_until(lambda: self.ctr("version").returncode == 0, timeout, "containerd")
        self._start_kubelet(kubeconfig, logs)
        wait_until(lambda: node_ready(kubectl), timeout, f"node {NODE_NAME} to be Ready")
        # After the node registered: started earlier, kube-proxy waits 30 s for it
        # and then falls back to a loopback node IP.
        self._start_kube_proxy(kubeconfig, logs)
        self.load_image(PAUSE_IMAGE)
        self.load_image(f"localhost/coredns:{(self.bin / '.coredns.version').read_text().strip()}")
        applied = kubectl("apply", "-f", "-", input_=json.dumps(_coredns_objects(self.bin)))
        if applied.returncode != 0:
            raise RuntimeError(f"cannot create CoreDNS: {applied.stderr}")
        wait_until(
            lambda: kubectl("rollout", "status", "-n", "kube-system", "deploy/coredns", "--timeout=2s").returncode == 0,
            timeout,
            "CoreDNS to be Ready",
        )

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [require_binary("ctr"), "--address", str(self.socket), "--namespace", "k8s.io", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def load_image(self, image: str) -> None:
        """Copy a podman image into the node's containerd (pods then use it with
        imagePullPolicy Never or IfNotPresent: there is no registry)."""
        archive = self.workdir / "images" / (image.replace("/", "_").replace(":", "_") + ".tar")
        archive.parent.mkdir(parents=True, exist_ok=True)
        podman = Path(__file__).resolve().parents[2] / "scripts" / "image" / "podman.sh"
        saved = subprocess.run(
            [str(podman), "save", "--format", "oci-archive", "-o", str(archive), image],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if saved.returncode != 0:
            raise RuntimeError(f"podman save {image}: {saved.stderr.strip()}")
        imported = self.ctr("images", "import", str(archive), timeout=300)
        archive.unlink()
        if imported.returncode != 0:
            raise RuntimeError(f"ctr images import {image}: {imported.stderr.strip()}")

    def _start_containerd(self, logs: Path) -> None:
        base = self.workdir / "containerd"
        cni_conf = self.workdir / "cni"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-ordermesh.conflist").write_text(json.dumps(_cni_config(self.workdir)))
        config = base / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
# Plugins this node never uses (and /opt, which the opt plugin would write).
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{self.socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  enable_selinux = false
  # The kubelet asks for negative OOM scores (-998 for sandboxes), which needs
  # CAP_SYS_RESOURCE: this VM withholds it, and runc's init dies writing one.
  # Restricted, containerd never asks for less than its own score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
"""
        )
        self._run("containerd", [require_binary("containerd"), "--config", str(config)], logs)

    def _start_kubelet(self, kubeconfig: Path, logs: Path) -> None:
        root = self.workdir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # Kubernetes 1.35 refuses cgroup v1 unless told; this VM has v1 (hybrid).
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": NODE_IP,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            # Only the API server (on this machine) calls the kubelet: logs, exec, port-forward.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDNS": [DNS_IP],
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "podLogsDir": str(self.workdir / "pod-logs"),
            "serializeImagePulls": False,
            # A shared test machine: never evict or collect images because its disk is busy.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "registerNode": True,
            "maxPods": 60,
        }
        (root / "config.yaml").write_text(json.dumps(config))
        self._run(
            "kubelet",
            [
                str(self.bin / "kubelet"), "--config", str(root / "config.yaml"), "--kubeconfig", str(kubeconfig),
                "--root-dir", str(root / "root"), "--cert-dir", str(root / "pki"),
                "--node-ip", NODE_IP, "--hostname-override", NODE_NAME,
            ],
            logs,
        )  # fmt: skip

    def _start_kube_proxy(self, kubeconfig: Path, logs: Path) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "nodePortAddresses": ["primary"],
            # No sysctl writes: localhost NodePorts need route_localnet, conntrack
            # tuning writes nf_conntrack_* (zero means leave it).
            "iptables": {"localhostNodePorts": False, "minSyncPeriod": "1s", "syncPeriod": "30s"},
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(json.dumps(config))
        self._run("kube-proxy", [str(self.bin / "kube-proxy"), "--config", str(path)], logs)

    def _run(self, name: str, argv: list[str], logs: Path) -> None:
        process = ManagedProcess(name, argv, logs / f"{name}.log")
        process.start()
        self.processes.append(process)

    def stop(self) -> None:
        """Stop the node's processes (drain first, sweep after: see LocalCluster.stop)."""
        for process in reversed(self.processes):
            process.stop(timeout=15)
        self.processes.clear()


class KubectlRun(Protocol):
    """What the node needs of LocalCluster.kubectl."""

    def __call__(
        self, *args: str, timeout: float = 60, input_: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...


def drain(kubectl: KubectlRun) -> None:
    """Delete every workload while the kubelet still runs: it stops the pods and
    tears their networking down (what a sweep would otherwise have to undo).
    An API server that no longer answers leaves it all to the sweep."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        kubectl("delete", "deploy,statefulset,daemonset,job,replicaset", "--all", "-A", "--wait=false", timeout=30)
        kubectl("delete", "pods", "--all", "-A", "--grace-period=2", "--timeout=60s", timeout=90)


def sweep(workdir: Path, bin_dir: Path) -> list[str]:
    """Remove what a real node left on the machine; returns what it removed.

    Safe to run again, and after a crash: every step looks at what is there.
    """
    removed: list[str] = []
    socket = workdir / "containerd" / "containerd.sock"
    # Containers whose shim outlived containerd (the kubelet never stopped them),
    # and any of the cluster's own processes still running (all name the workdir).
    for pid, cmdline in _processes():
        if pid != os.getpid() and (str(socket) in cmdline or str(workdir) + "/" in cmdline):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
                removed.append(f"process {pid}")
    time.sleep(0.2)
    if (bin_dir / "kube-proxy").exists():
        subprocess.run([str(bin_dir / "kube-proxy"), "--cleanup"], capture_output=True, timeout=60, check=False)
    before = _read_state(workdir)
    for table, chain in sorted(_chains() - before):
        _delete_chain(table, chain)
        removed.append(f"chain {table}/{chain}")
    for netns in NETNS_DIR.glob("cni-*") if NETNS_DIR.exists() else []:
        if _netns_unused(netns):
            subprocess.run(["umount", str(netns)], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                netns.unlink()
                removed.append(f"netns {netns.name}")
    for mount in sorted(_mounts_under(workdir), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        removed.append(f"mount {mount}")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
        removed.append(f"bridge {BRIDGE}")
    for controller in CGROUP_ROOT.iterdir() if CGROUP_ROOT.exists() else []:
        kubepods = controller / "kubepods"
        if kubepods.is_dir():
            for directory in sorted(kubepods.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if directory.is_dir():
                    with contextlib.suppress(OSError):
                        directory.rmdir()
            with contextlib.suppress(OSError):
                kubepods.rmdir()
                removed.append(f"cgroup {kubepods}")
    if shutil.which("conntrack", path="/usr/sbin:/sbin:/usr/bin"):
        subprocess.run(["conntrack", "-D", "-s", POD_CIDR], capture_output=True, check=False)
    return removed


def leftovers(workdir: Path) -> list[str]:
    """What a stopped real node would have left behind (empty after a sweep)."""
    found = [f"process {pid}" for pid, cmdline in _processes() if str(workdir) + "/" in cmdline]
    found += [f"mount {mount}" for mount in _mounts_under(workdir)]
    found += [f"chain {table}/{chain}" for table, chain in sorted(_chains() - _read_state(workdir))]
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"bridge {BRIDGE}")
    if CGROUP_ROOT.exists():
        found += [f"cgroup {c / 'kubepods'}" for c in CGROUP_ROOT.iterdir() if (c / "kubepods").is_dir()]
    return found


def node_ready(kubectl: KubectlRun, name: str = NODE_NAME) -> bool:
    """Ready, and untainted: the node lifecycle controller lifts the not-ready
    taint the API server put on a new node only once it saw it Ready."""
    found = kubectl("get", "node", name, "-o", "json", timeout=10)
    if found.returncode != 0:
        return False
    node = json.loads(found.stdout)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
    return ready and not node["spec"].get("taints")


def _cni_config(workdir: Path) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "ordermesh",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                # Without a default route pods cannot reach ClusterIPs (CoreDNS → API server).
                "isDefaultGateway": True,
                # Replies from the machine's DNS resolver come back to the pods.
                "ipMasq": True,
                # A pod calling its own Service lands on itself.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "dataDir": str(workdir / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


COREFILE = """.:1053 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"""


def _coredns_objects(bin_dir: Path) -> dict[str, object]:
    """CoreDNS as a Deployment behind Service kube-dns (the kubelet's clusterDNS).
    It listens on 1053 as a non-root user; the Service maps 53 to it."""
    image = f"localhost/coredns:{(bin_dir / '.coredns.version').read_text().strip()}"
    meta = {"name": "coredns", "namespace": "kube-system"}
    labels = {"k8s-app": "kube-dns"}
    watch = ["list", "watch"]
    container = {
        "name": "coredns",
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [{"containerPort": 1053, "protocol": "UDP"}, {"containerPort": 1053, "protocol": "TCP"}],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "system:coredns"},
                "rules": [
                    {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": watch},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": watch},
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "system:coredns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
                "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
            },
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {**meta, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": "coredns",
                            "dnsPolicy": "Default",  # its own upstream is the machine's resolver
                            "containers": [container],
                            "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
                "spec": {
                    "selector": labels,
                    "clusterIP": DNS_IP,
                    "ports": [
                        {"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"},
                    ],
                },
            },
        ],
    }


def _processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
    return found


def _chains() -> set[tuple[str, str]]:
    chains: set[tuple[str, str]] = set()
    for table in ("filter", "nat", "mangle"):
        listed = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=False)
        for line in listed.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "-N" and parts[1].startswith(CHAIN_PREFIXES):
                chains.add((table, parts[1]))
    return chains


def _delete_chain(table: str, chain: str) -> None:
    """Drop every rule that jumps to the chain, then the chain."""
    listed = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=False)
    for line in listed.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["-A"] and ("-j" in parts and parts[parts.index("-j") + 1] == chain):
            subprocess.run(["iptables", "-t", table, "-D", *parts[1:]], capture_output=True, check=False)
    subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True, check=False)
    subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True, check=False)


def _write_state(workdir: Path, chains: set[tuple[str, str]]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "chains-before.json").write_text(json.dumps(sorted(chains)))


def _read_state(workdir: Path) -> set[tuple[str, str]]:
    path = workdir / "chains-before.json"
    if not path.exists():
        return set()
    return {(table, chain) for table, chain in json.loads(path.read_text())}


def _mounts_under(workdir: Path) -> list[str]:
    prefix = str(workdir) + "/"
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(prefix) or point == str(workdir):
            mounts.append(point)
    return mounts


def _netns_unused(netns: Path) -> bool:
    """No process lives in it any more (its pod's sandbox is gone)."""
    try:
        target = os.stat(netns).st_ino
    except OSError:
        return True
    for pid, _ in _processes():
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino == target:
                return False
    return True
