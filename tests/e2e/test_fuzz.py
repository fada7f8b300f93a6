"""Every method of every service, fed requests nobody wrote by hand (tests/fuzzing.py).

No request may be answered UNKNOWN or INTERNAL (bad input is INVALID_ARGUMENT
naming the field, a missing thing NOT_FOUND...), no process may die or grow
much, and the global auditor must be clean afterwards: whatever the requests
changed, they changed only as valid requests do. FUZZ_REQUESTS sets the
requests per service (2,000 in `make test`, the same ones every run);
`make fuzz` sends 20,000 per service, new ones each run (FUZZ_RANDOM=1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.mesh import LocalMesh, free_offset
from mesh.local.procs import RedisServer
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.checkout.v1 import checkout_pb2
from ordermesh.order.v1 import order_pb2
from ordermesh.payment.v1 import payment_pb2
from ordermesh.shipping.v1 import shipping_pb2
from tests.e2e.audit import audit
from tests.fuzzing import requests

REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "2000"))
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"
SERVICES: dict[str, ServiceDescriptor] = {
    "catalog": catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
    "checkout": checkout_pb2.DESCRIPTOR.services_by_name["CheckoutService"],
    "order": order_pb2.DESCRIPTOR.services_by_name["OrderService"],
    "payment": payment_pb2.DESCRIPTOR.services_by_name["PaymentService"],
    "shipping": shipping_pb2.DESCRIPTOR.services_by_name["ShippingService"],
}
FORBIDDEN = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
# PlaceOrder answers that created an order: the auditor checks each is stored.
PLACED: list[str] = []


@pytest.fixture(scope="module")
def fuzz_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    """A mesh of its own (embedded profile): valid generated requests change stock
    (SetStock of a seeded product, say), which the other e2e tests must not see."""
    work = tmp_path_factory.mktemp("fuzz-mesh")
    redis_server = RedisServer(work / "redis").start()
    mesh = LocalMesh(work / "mesh", offset=free_offset(), redis_url=redis_server.url)
    try:
        mesh.start(timeout=90)
        yield mesh
    finally:
        mesh.stop()
        redis_server.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def calls(service: ServiceDescriptor) -> st.SearchStrategy[tuple[MethodDescriptor, tuple[str, bytes]]]:
    methods = list(service.methods)  # all unary: the public API has no streams
    return st.sampled_from(methods).flatmap(lambda m: st.tuples(st.just(m), requests(m.input_type)))


@pytest.mark.parametrize("context", list(SERVICES))
def test_no_request_is_answered_unknown_or_internal(fuzz_mesh: LocalMesh, context: str) -> None:
    service = SERVICES[context]
    process = fuzz_mesh.services[context].proc
    assert process is not None
    seen: dict[str, int] = {}
    with grpc.insecure_channel(fuzz_mesh.address(context)) as channel:
        # Raw bytes in and out: the spoiled requests must reach the server as they are.
        stubs = {
            m.name: channel.unary_unary(f"/{service.full_name}/{m.name}", None, None)  # no (de)serializer: bytes
            for m in service.methods
        }

        @settings(
            max_examples=REQUESTS,
            deadline=None,
            derandomize=not RANDOM,  # make test: the same requests every run, so a failure reproduces
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(calls(service))
        def one(call: tuple[MethodDescriptor, tuple[str, bytes]]) -> None:
            method, (how, payload) = call
            try:
                answer = stubs[method.name](payload, timeout=20)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
                details = error.details()
                assert code not in FORBIDDEN, f"{method.name} ({how}, {payload.hex()[:120]}): {code.name} {details}"
            if code is grpc.StatusCode.OK and method.name == "PlaceOrder":
                PLACED.append(checkout_pb2.PlaceOrderResponse.FromString(answer).order_id)
            seen[code.name] = seen.get(code.name, 0) + 1

        before = rss_kib(process.pid)
        one()
        after = rss_kib(process.pid)
    assert process.poll() is None, f"{context} died"
    assert sum(seen.values()) >= REQUESTS, seen
    assert "INVALID_ARGUMENT" in seen, seen  # the spoiled ones were refused, not taken
    # A leak grows with the requests; caches and pools settle early.
    assert after < before * 1.25 + 10_000, f"{context}: {before} KiB before, {after} KiB after"


async def test_the_auditor_is_clean_after_the_fuzzing(fuzz_mesh: LocalMesh, tmp_path: Path) -> None:
    await audit(fuzz_mesh, PLACED, tmp_path)
