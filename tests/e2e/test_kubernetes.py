"""The whole mesh in real pods (`make k8s-e2e`): a real kubelet node with
containerd, the CNI bridge, kube-proxy and CoreDNS (mesh.local.node); the
images podman built, loaded into containerd; the chart installed with its dev
Redis and MariaDB into a namespace enforcing the restricted profile.

Users' view: grpcurl through `kubectl port-forward`. Faults: a catalog pod
deleted and the checkout Deployment restarted while a load pod places orders
through the headless Service; then the global auditor, reading the pods'
MariaDB and Redis through port-forwards, checks every answered order is stored
once, nothing is oversold and no money is kept on a cancelled order.

Skipped, with the reason, where the machine cannot run a kubelet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh.local.cluster import LocalCluster
from mesh.local.node import leftovers, unsupported_reason
from mesh.local.procs import free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]
HELM = shutil.which("helm") or str(ROOT / ".tools/bin/helm")
GRPCURL = shutil.which("grpcurl") or str(ROOT / ".tools/bin/grpcurl")
IMAGE = "localhost/ordermesh:e2e"
DEPS_IMAGE = "localhost/ordermesh-deps:bookworm-1"
NAMESPACE = "shop"
SMALL = {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"cpu": "1", "memory": "384Mi"}}
VALUES = {
    "image": {"repository": IMAGE.split(":")[0], "tag": IMAGE.split(":")[1], "pullPolicy": "Never"},
    "devDependencies": {"enabled": True},
    # Two cores run the node, the control plane and the load: small requests so
    # a rolling restart's surge pod still schedules.
    "contexts": {
        name: {"replicas": 2 if name in ("catalog", "order") else 1, "resources": SMALL}
        for name in ("catalog", "checkout", "order", "payment", "shipping", "analytics")
    },
    "gateway": {"replicas": 1, "resources": SMALL},
}
# Every order id PlaceOrder answered in this module: the auditor checks each is stored.
ANSWERED: list[str] = []

pytestmark = pytest.mark.timeout(900)


def _build_images() -> None:
    for argv in (
        [str(ROOT / "scripts/image/build.sh"), IMAGE],
        [str(ROOT / "scripts/image/deps.sh"), DEPS_IMAGE],
        [str(ROOT / "scripts/cluster/images.sh")],
    ):
        built = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=ROOT)
        assert built.returncode == 0, built.stdout + built.stderr


@dataclass
class Mesh:
    cluster: LocalCluster
    workdir: Path

    def kubectl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", NAMESPACE, *args, timeout=timeout)

    def pods(self, context: str) -> list[str]:
        listed = self.kubectl("get", "pods", "-l", f"app.kubernetes.io/name={context}", "-o", "json")
        items = json.loads(listed.stdout)["items"]
        return [p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")]

    def port_forward(self, target: str, remote_port: int) -> tuple[subprocess.Popen[bytes], int]:
        local = free_port()
        argv = [self.cluster.binary("kubectl"), "--kubeconfig", str(self.cluster.kubeconfig), "-n", NAMESPACE]
        process = subprocess.Popen(
            [*argv, "port-forward", "--address", "127.0.0.1", target, f"{local}:{remote_port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(local), 30, f"port-forward to {target}")
        return process, local

    def load(self, name: str, *, rate: float, seconds: float) -> None:
        """Start a load pod (the image's `python -m loadgen`) calling checkout
        through its headless Service, as the mesh's own clients do."""
        restricted = {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        target = "dns:///ordermesh-checkout-headless:50051"
        args = ["loadgen", "--target", target, "--rate", str(rate), "--seconds", str(seconds), "--prefix", name]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"ordermesh.io/client": "true"}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "load",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "args": args,
                        "securityContext": restricted,
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        }
        created = self.cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input_=json.dumps(pod))
        assert created.returncode == 0, created.stderr
        wait_until(lambda: self._phase(name) in ("Running", "Succeeded", "Failed"), 60, f"load pod {name} to start")

    def load_result(self, name: str, timeout: float) -> dict[str, object]:
        wait_until(lambda: self._phase(name) in ("Succeeded", "Failed"), timeout, f"load pod {name} to finish")
        logs = self.kubectl("logs", name).stdout.strip().splitlines()
        assert self._phase(name) == "Succeeded" and logs, f"load pod {name}: {logs[-20:]}"
        result: dict[str, object] = json.loads(logs[-1])
        ids = result["order_ids"]
        assert isinstance(ids, list)
        ANSWERED.extend(str(i) for i in ids)
        return result

    def _phase(self, pod: str) -> str:
        found = self.kubectl("get", "pod", pod, "-o", "jsonpath={.status.phase}", timeout=20)
        return found.stdout.strip()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    reason = unsupported_reason()
    if reason is not None:
        pytest.skip(f"this machine cannot run a kubelet: {reason}")
    _build_images()
    workdir = tmp_path_factory.mktemp("k8s")
    cluster = LocalCluster(workdir / "cluster", "real")
    try:
        started = time.monotonic()
        cluster.start(timeout=120)
        print(f"\ncluster with a real node up in {time.monotonic() - started:.1f}s")
        assert cluster.node is not None
        for image in (IMAGE, DEPS_IMAGE):
            cluster.node.load_image(image)
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        }
        assert cluster.kubectl("apply", "-f", "-", input_=json.dumps(namespace)).returncode == 0
        values = workdir / "values.json"
        values.write_text(json.dumps(VALUES))
        started = time.monotonic()
        installed = subprocess.run(
            [HELM, "--kubeconfig", str(cluster.kubeconfig), "install", "ordermesh", str(ROOT / "helm/ordermesh"),
             "-n", NAMESPACE, "-f", str(values), "--wait", "--timeout", "300s"],
            capture_output=True, text=True, timeout=360,
        )  # fmt: skip
        if installed.returncode != 0:
            pods = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").stdout
            events = cluster.kubectl("get", "events", "-n", NAMESPACE).stdout
            pytest.fail(f"helm install: {installed.stdout}{installed.stderr}\n{pods}\n{events[-4000:]}")
        print(f"helm install --wait with real pods: {time.monotonic() - started:.1f}s")
        yield Mesh(cluster, workdir)
    finally:
        started = time.monotonic()
        cluster.stop()
        print(f"\ncluster stopped and swept in {time.monotonic() - started:.1f}s")
    # Stopping removed what the node made: processes, mounts, chains, bridge, cgroups.
    assert leftovers(cluster.workdir) == []


def grpcurl(port: int, method: str, body: dict[str, object]) -> dict[str, object]:
    called = subprocess.run(
        [GRPCURL, "-plaintext", "-d", json.dumps(body), f"127.0.0.1:{port}", method],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert called.returncode == 0, called.stderr
    answer: dict[str, object] = json.loads(called.stdout)
    return answer


def test_every_pod_started_once(mesh: Mesh) -> None:
    """The contexts start with their database and Redis (they wait for them
    rather than exiting), and two replicas create the schema together."""
    pods = json.loads(mesh.kubectl("get", "pods", "-o", "json").stdout)["items"]
    restarts = {p["metadata"]["name"]: s["restartCount"] for p in pods for s in p["status"]["containerStatuses"]}
    assert len(restarts) == 11, restarts  # 8 context pods (catalog and order run two), the gateway, Redis, MariaDB
    assert set(restarts.values()) == {0}, restarts


def test_place_order_through_port_forward_reaches_shipped(mesh: Mesh) -> None:
    checkout, checkout_port = mesh.port_forward("svc/ordermesh-checkout", 50051)
    order, order_port = mesh.port_forward("svc/ordermesh-order", 50051)
    try:
        placed = grpcurl(
            checkout_port,
            "ordermesh.checkout.v1.CheckoutService/PlaceOrder",
            {
                "request_id": uuid.uuid4().hex,
                "user_id": "k8s-user",
                "email": "k8s@example.com",
                "items": [{"product_id": "sku-1004", "quantity": 2}],
                "address": {"street_address": "1 Main St", "city": "Springfield", "state": "IL", "country": "US",
                            "zip_code": "62701"},
                "credit_card": {"number": "4432801561520454", "cvv": 672, "expiration_year": 2039,
                                "expiration_month": 1},
            },
        )  # fmt: skip
        order_id = str(placed["order_id"])
        ANSWERED.append(order_id)
        seen: list[str] = []

        def shipped() -> bool:
            found = grpcurl(order_port, "ordermesh.order.v1.OrderService/GetOrder", {"order_id": order_id})
            seen.append(str(found.get("status")))
            return found.get("status") == "SHIPPED" and bool(found.get("tracking_id"))

        try:
            wait_until(shipped, 60, f"order {order_id} to ship")
        except TimeoutError:
            logs = "".join(mesh.kubectl("logs", pod, "--tail=15").stdout for pod in mesh.pods("order"))
            pytest.fail(f"order {order_id} did not ship: statuses seen {seen[-3:]}\n{logs}")
    finally:
        for process in (checkout, order):
            process.terminate()
            process.wait(10)


def test_the_k6_smoke_scenario_passes_through_port_forward(mesh: Mesh) -> None:
    """As a user loads the cluster from a laptop: k6 (loadtest/smoke.js) through
    `kubectl port-forward` to checkout, catalog and order; k6 exits 0 only when
    its thresholds hold (no error, latency bounds)."""
    forwards = {name: mesh.port_forward(f"svc/ordermesh-{name}", 50051) for name in ("checkout", "catalog", "order")}
    try:
        order_ids = mesh.workdir / "k6-orders.txt"
        env = {**os.environ, **{name.upper(): f"127.0.0.1:{port}" for name, (_, port) in forwards.items()}}
        ran = subprocess.run(
            [sys.executable, "-m", "loadtest", "smoke", "--reports", str(mesh.workdir / "reports"),
             "--order-ids", str(order_ids)],
            capture_output=True, text=True, timeout=180, env=env, cwd=ROOT,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
        answered = order_ids.read_text().split()
        assert answered, "the smoke placed orders"
        ANSWERED.extend(answered)
        print(f"\nk6 smoke through port-forward: {len(answered)} orders, k6 exited 0")
    finally:
        for process, _ in forwards.values():
            process.terminate()
            process.wait(10)


def test_a_catalog_pod_deleted_mid_load_loses_no_order(mesh: Mesh) -> None:
    catalogs = mesh.pods("catalog")
    assert len(catalogs) == 2, catalogs
    mesh.load("load-catalog-kill", rate=12, seconds=30)
    # Not a wait for a state: the load pod is Running (load() waited for it);
    # this puts the fault well inside its 30 s of orders.
    time.sleep(8)
    deleted = mesh.kubectl("delete", "pod", catalogs[0], "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    result = mesh.load_result("load-catalog-kill", timeout=120)
    print(f"\ncatalog pod deleted mid-load: {_brief(result)}")
    assert result["failed"] == 0, result["codes"]
    assert int(str(result["attempted"])) >= 300


def test_a_rolling_restart_of_checkout_under_load_fails_no_call(mesh: Mesh) -> None:
    before = set(mesh.pods("checkout"))
    mesh.load("load-checkout-rollout", rate=12, seconds=35)
    time.sleep(6)  # the restart starts inside the load window, as above
    restarted = mesh.kubectl("rollout", "restart", "deploy/ordermesh-checkout")
    assert restarted.returncode == 0, restarted.stderr
    status = mesh.kubectl("rollout", "status", "deploy/ordermesh-checkout", "--timeout=120s", timeout=150)
    assert status.returncode == 0, status.stdout + status.stderr
    result = mesh.load_result("load-checkout-rollout", timeout=120)
    print(f"\ncheckout rolled mid-load: {_brief(result)}")
    after = set(mesh.pods("checkout"))
    assert after and not after & before, "every checkout pod was replaced"
    assert result["failed"] == 0, result["codes"]


def test_the_global_auditor_is_clean_after_the_faults(mesh: Mesh) -> None:
    """Runs last in this module: every order any test above was answered."""
    assert ANSWERED, "the tests above placed orders"
    database, db_port = mesh.port_forward("svc/mariadb", 3306)
    redis, redis_port = mesh.port_forward("svc/redis", 6379)
    try:
        acknowledged = mesh.workdir / "acknowledged.txt"
        acknowledged.write_text("\n".join(ANSWERED) + "\n")
        dsn = f"mysql+asyncmy://ordermesh:ordermesh@127.0.0.1:{db_port}"
        env = {
            **os.environ,
            "CATALOG_DATABASE_URL": f"{dsn}/ordermesh_catalog",
            "ORDER_DATABASE_URLS": f"{dsn}/ordermesh_order_0",
            "PAYMENT_DATABASE_URL": f"{dsn}/ordermesh_payment",
            "SHIPPING_DATABASE_URL": f"{dsn}/ordermesh_shipping",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        audit = subprocess.run(
            [sys.executable, "-m", "auditor", "--acknowledged", str(acknowledged), "--settle", "90"],
            capture_output=True, text=True, timeout=180, env=env, cwd=ROOT,
        )  # fmt: skip
        print(audit.stdout)
        assert audit.returncode == 0, audit.stdout + audit.stderr
    finally:
        for process in (database, redis):
            process.terminate()
            process.wait(10)


def _brief(result: dict[str, object]) -> str:
    return json.dumps({k: v for k, v in result.items() if k != "order_ids"})
