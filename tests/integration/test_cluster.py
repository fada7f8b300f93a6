"""The chart against a real kube-apiserver (etcd, controller-manager, scheduler,
kwok nodes): installed with --wait into a namespace enforcing the restricted
Pod Security profile, every Deployment Ready, uninstalled without a trace."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.local.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm/ordermesh"
HELM = shutil.which("helm") or str(ROOT / ".tools/bin/helm")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        local.start(timeout=90)
        yield local
    finally:
        local.stop()


def restricted_namespace(cluster: LocalCluster, name: str) -> None:
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }
    created = cluster.kubectl("apply", "-f", "-", input_=json.dumps(namespace))
    assert created.returncode == 0, created.stderr


def helm(cluster: LocalCluster, *args: str) -> tuple[int, str]:
    result = subprocess.run(
        [HELM, "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True, text=True, timeout=240
    )
    return result.returncode, result.stdout + result.stderr


def test_the_chart_installs_ready_under_the_restricted_profile_and_uninstalls_clean(cluster: LocalCluster) -> None:
    restricted_namespace(cluster, "shop")
    code, output = helm(cluster, "install", "om", str(CHART), "-n", "shop", "--wait", "--timeout", "180s")
    assert code == 0, output
    deployments = json.loads(cluster.kubectl("get", "deploy", "-n", "shop", "-o", "json").stdout)["items"]
    assert len(deployments) == 7  # one per context, and the gateway
    for deployment in deployments:
        status, want = deployment["status"], deployment["spec"]["replicas"]
        assert status.get("readyReplicas") == want, (deployment["metadata"]["name"], status)
    events = cluster.kubectl("get", "events", "-n", "shop", "-o", "json").stdout
    assert "violates PodSecurity" not in events
    code, output = helm(cluster, "uninstall", "om", "-n", "shop", "--wait")
    assert code == 0, output
    kinds = "deploy,rs,svc,cm,secret,sa,pdb,networkpolicy,hpa"
    # A Deployment's ReplicaSets go by background cascading deletion: the garbage
    # collector removes them shortly after helm's --wait has seen the Deployments go.
    deadline = time.monotonic() + 60
    while True:
        left = cluster.kubectl("get", kinds, "-n", "shop", "-l", "app.kubernetes.io/instance=om", "-o", "name")
        if not left.stdout.strip() or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert left.stdout.strip() == "", f"left behind: {left.stdout}"


def test_a_pod_that_breaks_the_restricted_profile_is_refused_with_the_reason(cluster: LocalCluster) -> None:
    restricted_namespace(cluster, "strict")
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "namespace": "strict"},
        "spec": {"containers": [{"name": "app", "image": "localhost/ordermesh:dev"}]},
    }
    refused = cluster.kubectl("apply", "-f", "-", input_=json.dumps(bare))
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr


def test_the_kustomize_manifests_pass_a_server_side_dry_run(cluster: LocalCluster) -> None:
    created = cluster.kubectl("apply", "-f", str(ROOT / "k8s/namespace.yaml"))
    assert created.returncode == 0, created.stderr
    dry = cluster.kubectl("apply", "--dry-run=server", "-k", str(ROOT / "k8s"))
    assert dry.returncode == 0, dry.stderr
    assert "deployment.apps/ordermesh-catalog created (server dry run)" in dry.stdout
