"""compose.yaml against the code: every setting is one its context reads and
accepts, every topic and group is the mesh's, every database exists, every
container of ours runs restricted. (No Docker engine here to run it.)"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from gateway.settings import GatewaySettings
from launcher.topology import mesh_topology
from mesh.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
CONTEXTS = ("catalog", "checkout", "order", "payment", "shipping", "analytics")
SETTINGS = {
    "catalog": "CatalogSettings",
    "checkout": "CheckoutSettings",
    "order": "OrderSettings",
    "payment": "PaymentSettings",
    "shipping": "ShippingSettings",
    "analytics": "AnalyticsSettings",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def settings_class(context: str) -> type[ServiceSettings]:
    cls: type[ServiceSettings] = getattr(importlib.import_module(f"{context}.settings"), SETTINGS[context])
    return cls


@pytest.mark.parametrize("context", CONTEXTS)
def test_each_context_gets_only_settings_it_reads_and_accepts(compose: dict[str, Any], context: str) -> None:
    service = compose["services"][context]
    assert service["command"] == [context]
    env = {str(k): str(v) for k, v in service["environment"].items()}
    cls = settings_class(context)
    unknown = sorted(k for k in env if k.lower() not in cls.model_fields)
    assert unknown == [], f"{context} does not read {unknown} (a misspelling would be ignored silently)"
    settings = cls.model_validate({k.lower(): v for k, v in env.items()})
    assert settings.event_transport == "rocketmq" and settings.grpc_port == 50051


@pytest.mark.parametrize("context", CONTEXTS)
def test_each_context_runs_restricted_with_a_health_check(compose: dict[str, Any], context: str) -> None:
    service = compose["services"][context]
    assert service["user"] == "10001:10001"
    assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["healthcheck"]["test"] == ["CMD", "python3", "-m", "mesh.probe", "readiness"]


def test_dependencies_and_published_ports_are_consistent(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published: list[str] = []
    for name, service in services.items():
        depends = service.get("depends_on", [])
        for dependency in depends if isinstance(depends, list) else list(depends):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
            published.append(port.split(":")[1])
    assert len(published) == len(set(published))


def test_every_database_a_context_names_is_created(compose: dict[str, Any]) -> None:
    created = set(re.findall(r"CREATE DATABASE IF NOT EXISTS (\w+)", (ROOT / "compose/initdb.sql").read_text()))
    named = set()
    for context in CONTEXTS:
        env = compose["services"][context]["environment"]
        for key in ("DATABASE_URL", "DATABASE_URLS"):
            if key in env:
                named |= {urlparse(url).path.lstrip("/") for url in env[key].split(",")}
    expected = {f"ordermesh_{name}" for name in ("catalog", "order_0", "payment", "shipping", "analytics")}
    assert named == created == expected


def test_the_broker_gets_exactly_the_meshs_topics_and_groups(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["rocketmq-init"]["command"])
    topics = dict(re.findall(r"updateTopic .*?-t '([^']+)' -a \+message\.type=(\w+)", script))
    groups = {g: int(r) for g, r in re.findall(r"updateSubGroup .*?-g (\S+) -r (\d+)", script)}
    topology = mesh_topology()
    assert topics == topology.topics
    assert groups == topology.groups


def test_prometheus_scrapes_every_context_and_the_gateway(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "compose/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    port = str(compose["x-environment"]["METRICS_PORT"])
    assert targets == {f"{process}:{port}" for process in (*CONTEXTS, "gateway")}


def test_the_gateway_gets_only_settings_it_reads_and_an_http_health_check(compose: dict[str, Any]) -> None:
    service = compose["services"]["gateway"]
    assert service["command"] == ["gateway"]
    env = {str(k): str(v) for k, v in service["environment"].items()}
    unknown = sorted(k for k in env if k.lower() not in GatewaySettings.model_fields)
    assert unknown == [], f"the gateway does not read {unknown}"
    settings = GatewaySettings.model_validate({k.lower(): v for k, v in env.items()})
    assert settings.http_port == 8080 and settings.metrics_port == 9464
    assert {settings.catalog_address, settings.checkout_address, settings.order_address} == {
        f"{name}:50051" for name in ("catalog", "checkout", "order")
    }
    assert service["user"] == "10001:10001" and service["read_only"] is True
    assert service["healthcheck"]["test"] == ["CMD", "python3", "-m", "gateway.probe", "readiness"]
    assert "127.0.0.1:8080:8080" in service["ports"]
