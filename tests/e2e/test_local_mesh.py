"""The mesh as a user meets it after `make run`: grpcurl, health, reflection, metrics."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from launcher.mesh import CONTEXTS, LocalMesh

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "catalog": "ordermesh.catalog.v1.CatalogService",
    "checkout": "ordermesh.checkout.v1.CheckoutService",
    "order": "ordermesh.order.v1.OrderService",
    "payment": "ordermesh.payment.v1.PaymentService",
    "shipping": "ordermesh.shipping.v1.ShippingService",
    "analytics": "ordermesh.analytics.v1.AnalyticsService",
}


def grpcurl(*args: str) -> str:
    binary = shutil.which("grpcurl") or str(ROOT / ".tools/bin/grpcurl")
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"grpcurl {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("context", CONTEXTS)
def test_grpcurl_lists_service_health_and_reflection(local_mesh: LocalMesh, context: str) -> None:
    port = next(e.grpc_port for e in local_mesh.endpoints if e.context == context)
    listed = set(grpcurl("-plaintext", f"localhost:{port}", "list").split())
    assert listed == {SERVICES[context], "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    assert '"status": "SERVING"' in grpcurl("-plaintext", f"localhost:{port}", "grpc.health.v1.Health/Check")
    readiness = grpcurl(
        "-plaintext", "-d", '{"service": "readiness"}', f"localhost:{port}", "grpc.health.v1.Health/Check"
    )
    assert '"status": "SERVING"' in readiness


def readme_examples() -> list[str]:
    """The grpcurl commands of the README's 'Try it' block, as a user would paste them."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- grpcurl-examples -->", 2)[1]
    commands = [line.strip() for line in block.splitlines() if line.strip().startswith("grpcurl ")]
    assert len(commands) >= 4, "the README should show several grpcurl examples"
    return commands


def test_readme_grpcurl_examples_run_against_the_mesh(local_mesh: LocalMesh) -> None:
    ports = {str(50051 + i): str(e.grpc_port) for i, e in enumerate(local_mesh.endpoints)}
    for command in readme_examples():
        argv = shlex.split(re.sub(r"localhost:(5005\d)", lambda m: f"localhost:{ports[m.group(1)]}", command))
        grpcurl(*argv[1:])


def test_every_process_exports_red_metrics(local_mesh: LocalMesh) -> None:
    for endpoint in local_mesh.endpoints:
        grpcurl("-plaintext", f"localhost:{endpoint.grpc_port}", "grpc.health.v1.Health/Check")
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.metrics_port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Check"' in body
        assert "grpc_server_handling_seconds_bucket" in body
