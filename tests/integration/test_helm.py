"""The Helm chart, rendered by the real helm: lint, the values schema, the
restricted profile on every container, distinct probes, and a NetworkPolicy
path for every call of the design. Every rendering is checked against the
Kubernetes API schemas (kubernetes-validate --strict)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm/ordermesh"
HELM = shutil.which("helm") or str(ROOT / ".tools/bin/helm")
KUBE_VERSION = "1.35.0"  # what `make cluster` runs
VALIDATE_VERSIONS = ("1.36.0", "1.37.0")  # the two newest kubernetes-validate ships
CONTEXTS = ("catalog", "checkout", "order", "payment", "shipping")
# The design's gRPC calls: caller -> callee.
CALLS = {("checkout", "catalog"), ("checkout", "shipping"), ("checkout", "payment")} | {
    ("order", "catalog"),
    ("order", "payment"),
    ("order", "shipping"),
}
VALUE_SETS = {
    "default": [],
    "external-rocketmq-and-collector": [
        "--set", "dependencies.eventTransport=rocketmq",
        "--set", "dependencies.rocketmqEndpoint=rocketmq.infra:8081",
        "--set", "dependencies.redisUrl=redis://redis.infra:6379/0",
        "--set", "otel.endpoint=http://otel-collector.infra:4317",
    ],
    "autoscaling": ["--set", "autoscaling.enabled=true"],
    "no-network-policy-no-pdb": ["--set", "networkPolicy.enabled=false", "--set", "podDisruptionBudget.enabled=false"],
    "tls": ["--set", "tls.enabled=true", "--set", "tls.secretName=shop-tls"],
}  # fmt: skip


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60)


def render(*values: str) -> list[dict[str, Any]]:
    result = helm("template", "om", str(CHART), "--namespace", "shop", "--kube-version", KUBE_VERSION, *values)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_the_chart_lints_strictly_and_renders_valid_objects(name: str, tmp_path: Path) -> None:
    values = VALUE_SETS[name]
    lint = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(render(*values)))
    for version in VALIDATE_VERSIONS:
        checked = subprocess.run(
            [str(ROOT / ".venv/bin/kubernetes-validate"), "--strict", "-k", version, "--quiet", str(rendered)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert checked.returncode == 0, f"Kubernetes {version}:\n{checked.stdout}{checked.stderr}"


def test_a_misspelled_value_is_refused_naming_it() -> None:
    result = helm("template", "om", str(CHART), "--kube-version", KUBE_VERSION, "--set", "contexts.catalog.replicaz=3")
    assert result.returncode != 0
    assert "additional properties 'replicaz' not allowed" in result.stderr
    result = helm(
        "template", "om", str(CHART), "--kube-version", KUBE_VERSION, "--set", "dependencies.eventTransport=kafka"
    )
    assert result.returncode != 0 and "eventTransport" in result.stderr


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_container_is_restricted_probed_and_bounded(name: str) -> None:
    docs = render(*VALUE_SETS[name])
    deployments = of_kind(docs, "Deployment")
    assert sorted(d["metadata"]["name"] for d in deployments) == [f"om-{c}" for c in CONTEXTS]
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        where = deployment["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["runAsNonRoot"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert security["seccompProfile"]["type"] == "RuntimeDefault", where
            services = {}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "grpc" in container[probe]:  # the kubelet's own gRPC probe
                    assert container[probe]["grpc"]["port"] == 50051, (where, probe)
                    services[probe] = container[probe]["grpc"]["service"]
                else:  # with mutual TLS: the image's probe, presenting the pod's certificate
                    command = container[probe]["exec"]["command"]
                    assert command[:3] == ["python3", "-m", "mesh.probe"], (where, probe)
                    services[probe] = command[3]
            assert container["livenessProbe"] != container["readinessProbe"], where
            assert services == {"startupProbe": "", "livenessProbe": "", "readinessProbe": "readiness"}, where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        config = of_kind(docs, "ConfigMap")[0]["data"]
        assert pod["terminationGracePeriodSeconds"] > pause + int(config["SHUTDOWN_GRACE_SECONDS"]), where


def test_with_tls_every_pod_gets_the_certificates_and_probes_over_tls() -> None:
    for deployment in of_kind(render(*VALUE_SETS["tls"]), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TLS_CA_FILE"] == "/etc/ordermesh/tls/ca.crt" and env["TLS_CERT_FILE"].endswith("tls.crt")
        [tls] = [v for v in pod["volumes"] if v["name"] == "tls"]
        assert tls["secret"]["secretName"] == "shop-tls" and pod["securityContext"]["fsGroup"] == 10001
        assert "exec" in container["readinessProbe"]


def test_connection_strings_live_only_in_the_secret() -> None:
    docs = render()
    config = of_kind(docs, "ConfigMap")[0]["data"]
    assert not [key for key, value in config.items() if "://" in value and "@" in value], config
    secret = of_kind(docs, "Secret")[0]["stringData"]
    assert "ORDER_DATABASE_URLS" in secret and "REDIS_URL" in secret
    catalog = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "om-catalog")
    env = {e["name"]: e for e in catalog["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "CATALOG_DATABASE_URL"


def test_clients_balance_over_every_pod_through_headless_services() -> None:
    docs = render()
    headless = {s["metadata"]["name"] for s in of_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"}
    assert headless == {f"om-{c}-headless" for c in CONTEXTS}
    config = of_kind(docs, "ConfigMap")[0]["data"]
    for context in ("catalog", "payment", "shipping"):
        assert config[f"{context.upper()}_ADDRESS"] == f"dns:///om-{context}-headless:50051"


def _matches(selector: dict[str, Any], context: str) -> bool:
    labels = selector.get("podSelector", {}).get("matchLabels", {})
    return bool(labels.get("app.kubernetes.io/name") == context)


def test_every_call_of_the_design_has_a_network_path_and_nothing_else_does() -> None:
    docs = render()
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    deny = policies.pop("om-default-deny")
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    allowed: set[tuple[str, str]] = set()
    for callee in CONTEXTS:
        for rule in policies[f"om-{callee}"]["ingress"]:
            if any(p["port"] == 50051 for p in rule["ports"]):
                allowed |= {(caller, callee) for caller in CONTEXTS for peer in rule["from"] if _matches(peer, caller)}
    egress: set[tuple[str, str]] = set()
    for caller in CONTEXTS:
        for rule in policies[f"om-{caller}"]["egress"]:
            if any(p["port"] == 50051 for p in rule["ports"]):
                egress |= {
                    (caller, callee) for callee in CONTEXTS for peer in rule.get("to", []) if _matches(peer, callee)
                }
    assert allowed == CALLS, "ingress on 50051 follows the design's calls"
    assert egress == CALLS, "egress on 50051 follows the design's calls"
    services = {s["metadata"]["labels"]["app.kubernetes.io/name"] for s in of_kind(docs, "Service")}
    for context in services:
        ports = {p["port"] for rule in policies[f"om-{context}"]["ingress"] for p in rule["ports"]}
        assert ports == {50051, 9464}, f"every Service port of {context} has a policy path"


def test_the_kustomize_manifests_are_the_charts_rendering() -> None:
    """k8s/ordermesh.yaml is `make k8s`'s output: regenerate it when the chart changes."""
    result = helm("template", "ordermesh", str(CHART), "--namespace", "ordermesh", "--kube-version", KUBE_VERSION)
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "k8s/ordermesh.yaml").read_text().split("\n", 1)[1]
    assert committed == result.stdout, "k8s/ordermesh.yaml is stale: run `make k8s`"
    namespace = yaml.safe_load((ROOT / "k8s/namespace.yaml").read_text())
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
