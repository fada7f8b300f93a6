"""The Helm chart, rendered by the real helm: lint, the values schema, the
restricted profile on every container (the gateway's too), distinct probes, and a NetworkPolicy
path for every call of the design (and, with devDependencies, to the dev Redis
and MariaDB from exactly the contexts that use them). Every rendering is
checked against the Kubernetes API schemas (kubernetes-validate --strict)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm/ordermesh"
HELM = shutil.which("helm") or str(ROOT / ".tools/bin/helm")
KUBE_VERSION = "1.35.0"  # what `make cluster` runs
VALIDATE_VERSIONS = ("1.36.0", "1.37.0")  # the two newest kubernetes-validate ships
CONTEXTS = ("catalog", "checkout", "order", "payment", "shipping", "analytics")
# The HTTP gateway: the seventh Deployment, a gRPC client of four contexts.
PROCESSES = (*CONTEXTS, "gateway")
# The design's gRPC calls: caller -> callee.
CALLS = (
    {("checkout", "catalog"), ("checkout", "shipping"), ("checkout", "payment")}
    | {
        ("order", "catalog"),
        ("order", "payment"),
        ("order", "shipping"),
    }
    | {("gateway", callee) for callee in ("catalog", "checkout", "order", "analytics")}
)
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
    "dev-dependencies": ["--set", "devDependencies.enabled=true", "--set", "image.pullPolicy=Never"],
}  # fmt: skip
# The Deployments devDependencies adds, beside the contexts'.
DEV_DEPENDENCIES = ("mariadb", "redis")


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
    values = VALUE_SETS[name]
    docs = render(*values)
    deployments = of_kind(docs, "Deployment")
    dev = DEV_DEPENDENCIES if "devDependencies.enabled=true" in values else ()
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(f"om-{c}" for c in PROCESSES + dev)
    pull = "Never" if "image.pullPolicy=Never" in values else "IfNotPresent"
    [config] = [c["data"] for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == "om-ordermesh"]
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        where = deployment["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod.get("initContainers", []) + pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert security["seccompProfile"]["type"] == "RuntimeDefault", where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            assert container["imagePullPolicy"] == pull, where
            # Writes go only to emptyDir volumes (the root filesystem is read-only).
            empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            writable = {m["name"] for m in container["volumeMounts"] if not m.get("readOnly")}
            assert writable <= empty, (where, writable - empty)
        for container in pod["containers"]:
            assert container["livenessProbe"] != container["readinessProbe"], where
            if container["name"] in dev:
                # Liveness: the port is open; start-up and readiness: the server answers.
                assert container["livenessProbe"]["tcpSocket"]["port"] in {p["name"] for p in container["ports"]}
                for probe in ("startupProbe", "readinessProbe"):
                    assert container[probe]["exec"]["command"], (where, probe)
                assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
                continue
            if container["name"] == "gateway":  # HTTP: the same probes with or without TLS (a client of it only)
                paths = {
                    p: container[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")
                }
                assert paths == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
                assert {container[p]["httpGet"]["port"] for p in paths} == {"http"}
                continue
            services = {}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "grpc" in container[probe]:  # the kubelet's own gRPC probe
                    assert container[probe]["grpc"]["port"] == 50051, (where, probe)
                    services[probe] = container[probe]["grpc"]["service"]
                else:  # with mutual TLS: the image's probe, presenting the pod's certificate
                    command = container[probe]["exec"]["command"]
                    assert command[:3] == ["python3", "-m", "mesh.probe"], (where, probe)
                    services[probe] = command[3]
            assert services == {"startupProbe": "", "livenessProbe": "", "readinessProbe": "readiness"}, where
            pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert pod["terminationGracePeriodSeconds"] > pause + int(config["SHUTDOWN_GRACE_SECONDS"]), where


def test_with_tls_every_pod_gets_the_certificates_and_probes_over_tls() -> None:
    for deployment in of_kind(render(*VALUE_SETS["tls"]), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TLS_CA_FILE"] == "/etc/ordermesh/tls/ca.crt" and env["TLS_CERT_FILE"].endswith("tls.crt")
        [tls] = [v for v in pod["volumes"] if v["name"] == "tls"]
        assert tls["secret"]["secretName"] == "shop-tls" and pod["securityContext"]["fsGroup"] == 10001
        assert ("httpGet" if container["name"] == "gateway" else "exec") in container["readinessProbe"]


def test_connection_strings_live_only_in_the_secret() -> None:
    docs = render()
    config = of_kind(docs, "ConfigMap")[0]["data"]
    assert not [key for key, value in config.items() if "://" in value and "@" in value], config
    secret = of_kind(docs, "Secret")[0]["stringData"]
    assert "ORDER_DATABASE_URLS" in secret and "REDIS_URL" in secret
    for context in ("catalog", "payment", "shipping", "analytics"):
        deployment = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == f"om-{context}")
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == f"{context.upper()}_DATABASE_URL"
        assert secret[f"{context.upper()}_DATABASE_URL"].endswith(f"/ordermesh_{context}")


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


@pytest.mark.parametrize("name", ["default", "dev-dependencies"])
def test_every_call_of_the_design_has_a_network_path_and_nothing_else_does(name: str) -> None:
    docs = render(*VALUE_SETS[name])
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    deny = policies.pop("om-default-deny")
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    allowed: set[tuple[str, str]] = set()
    for callee in CONTEXTS:
        for rule in policies[f"om-{callee}"]["ingress"]:
            if any(p["port"] == 50051 for p in rule["ports"]):
                allowed |= {(caller, callee) for caller in PROCESSES for peer in rule["from"] if _matches(peer, caller)}
    egress: set[tuple[str, str]] = set()
    for caller in PROCESSES:
        for rule in policies[f"om-{caller}"]["egress"]:
            if any(p["port"] == 50051 for p in rule["ports"]):
                egress |= {
                    (caller, callee) for callee in CONTEXTS for peer in rule.get("to", []) if _matches(peer, callee)
                }
    assert allowed == CALLS, "ingress on 50051 follows the design's calls"
    assert egress == CALLS, "egress on 50051 follows the design's calls"
    for service in of_kind(docs, "Service"):
        name = service["metadata"]["labels"]["app.kubernetes.io/name"]
        ports = {p["port"] for rule in policies[f"om-{name}"]["ingress"] for p in rule["ports"]}
        targets = {
            next(c["containerPort"] for c in _container_ports(docs, name) if c["name"] == p["targetPort"])
            for p in service["spec"]["ports"]
        }
        assert targets <= ports, f"every Service port of {name} has a policy path"
        if name in CONTEXTS:
            assert ports == {50051, 9464}, name
        if name == "gateway":
            assert ports == {8080, 9464}


def _container_ports(docs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    [deployment] = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == f"om-{name}"]
    return [port for c in deployment["spec"]["template"]["spec"]["containers"] for port in c["ports"]]


def test_the_dev_redis_and_mariadb_let_in_only_the_contexts_that_use_them() -> None:
    """Who uses what is read from the contexts' own environment (REDIS_URL, DATABASE_URL[S]);
    the dev servers make no call at all."""
    docs = render(*VALUE_SETS["dev-dependencies"])
    users: dict[str, set[str]] = {"redis": set(), "mariadb": set()}
    for context in PROCESSES:
        [deployment] = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == f"om-{context}"]
        env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        if "REDIS_URL" in env:
            users["redis"].add(context)
        if env & {"DATABASE_URL", "DATABASE_URLS"}:
            users["mariadb"].add(context)
    assert users == {
        "redis": {"catalog", "checkout", "order", "analytics", "gateway"},
        "mariadb": {"catalog", "order", "payment", "shipping", "analytics"},
    }
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    port = {"redis": 6379, "mariadb": 3306}
    for dependency, contexts in users.items():
        policy = policies[f"om-{dependency}"]
        assert policy["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy, dependency
        [rule] = policy["ingress"]
        assert rule["ports"] == [{"port": port[dependency], "protocol": "TCP"}], dependency
        peers = {c for c in PROCESSES + DEV_DEPENDENCIES for peer in rule["from"] if _matches(peer, c)}
        assert peers == contexts and len(rule["from"]) == len(contexts), dependency
        # Every context that uses it may leave on that port.
        for context in contexts:
            out = {p["port"] for r in policies[f"om-{context}"]["egress"] for p in r["ports"] if "to" not in r}
            assert port[dependency] in out, (context, dependency)


def test_the_dev_dependencies_serve_the_default_connection_strings() -> None:
    docs = render(*VALUE_SETS["dev-dependencies"])
    services = {s["metadata"]["name"]: s["spec"] for s in of_kind(docs, "Service")}
    secret = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "om-ordermesh")["stringData"]
    redis = urlsplit(secret["REDIS_URL"])
    assert [p["port"] for p in services[str(redis.hostname)]["ports"]] == [redis.port]
    init = next(s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "om-mariadb-init")["stringData"]
    urls = [
        secret[k]
        for k in ("CATALOG_DATABASE_URL", "PAYMENT_DATABASE_URL", "SHIPPING_DATABASE_URL", "ANALYTICS_DATABASE_URL")
    ]
    urls += secret["ORDER_DATABASE_URLS"].split(",")
    for url in map(urlsplit, urls):
        assert [p["port"] for p in services[str(url.hostname)]["ports"]] == [url.port]
        database = url.path.lstrip("/")
        assert f"CREATE DATABASE IF NOT EXISTS `{database}`" in init["init.sql"]
        assert f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{url.username}'@'%'" in init["init.sql"]
        assert f"CREATE USER IF NOT EXISTS '{url.username}'@'%' IDENTIFIED BY '{url.password}'" in init["init.sql"]
    images = {
        c["image"]
        for d in of_kind(docs, "Deployment")
        if d["metadata"]["name"] in {f"om-{n}" for n in DEV_DEPENDENCIES}
        for c in d["spec"]["template"]["spec"].get("initContainers", []) + d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"localhost/ordermesh-deps:bookworm-1"}
    # Off by default: none of it is rendered.
    default = render()
    assert not {"redis", "mariadb"} & {s["metadata"]["name"] for s in of_kind(default, "Service")}
    assert not [d for d in default if d["metadata"]["name"].startswith(("om-redis", "om-mariadb"))]


def test_the_kustomize_manifests_are_the_charts_rendering() -> None:
    """k8s/ordermesh.yaml is `make k8s`'s output: regenerate it when the chart changes."""
    result = helm("template", "ordermesh", str(CHART), "--namespace", "ordermesh", "--kube-version", KUBE_VERSION)
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "k8s/ordermesh.yaml").read_text().split("\n", 1)[1]
    assert committed == result.stdout, "k8s/ordermesh.yaml is stale: run `make k8s`"
    namespace = yaml.safe_load((ROOT / "k8s/namespace.yaml").read_text())
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
