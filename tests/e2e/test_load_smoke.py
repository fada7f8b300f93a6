"""`make load SCENARIO=smoke` against the e2e mesh: the k6 scripts, their runner
(``python -m loadtest``) and the thresholds, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from common.order_ids import MINTED
from launcher.mesh import LocalMesh
from loadtest.run import SCENARIOS, k6_binary
from ordermesh.order.v1 import order_pb2, order_pb2_grpc
from tests.e2e.test_place_order import ANSWERED
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_loads_its_protos_and_has_thresholds(scenario: str) -> None:
    """`k6 inspect` runs a script's init code (the protos loaded from protos/, the
    options built from the environment) without a mesh: scenarios that `make
    test` does not run still cannot rot unnoticed."""
    result = subprocess.run(
        [k6_binary(), "inspect", "--execution-requirements", str(ROOT / "loadtest" / f"{scenario}.js")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    options = json.loads(result.stdout)
    assert list(options["scenarios"]) == [scenario]
    assert {"errors", "checks"} <= set(options["thresholds"]), "every scenario limits unexpected answers"
    assert any(name.startswith("grpc_req_duration{") for name in options["thresholds"]), "and latency"
    assert "p(99)" in options["summaryTrendStats"]


async def test_the_smoke_scenario_passes_against_the_mesh(local_mesh: LocalMesh, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    order_ids = tmp_path / "answered.txt"
    samples = tmp_path / "samples.json"
    env = {
        **os.environ,
        # Only the environment tells the scripts where the mesh is (the private ports here).
        "CHECKOUT": local_mesh.address("checkout"),
        "CATALOG": local_mesh.address("catalog"),
        "ORDER": local_mesh.address("order"),
        "DURATION": "10s",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest", "smoke",
        "--reports", str(reports), "--order-ids", str(order_ids),
        # Passed on to k6: every sample, with the trace id of its call.
        "--out", f"json={samples}", "--quiet",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(process.communicate(), timeout=90))[0].decode()
    assert process.returncode == 0, f"k6's thresholds failed or it could not run:\n{output}"
    assert f"the mesh answers at {local_mesh.address('checkout')}" in output, "the runner started no mesh of its own"
    assert "THRESHOLDS" in output and "orders_placed" in output, "k6's summary is printed"

    html = list(reports.glob("smoke-*.html"))
    assert len(html) == 1, list(reports.iterdir())
    assert html[0].read_text().lstrip().lower().startswith("<!doctype html") and html[0].stat().st_size > 10_000

    answered = order_ids.read_text().split()
    assert answered and all(MINTED.match(order_id) for order_id in answered), answered
    summary = json.loads(next(reports.glob("smoke-*.json")).read_text())["metrics"]
    assert summary["orders_placed"]["count"] == len(answered) >= 10
    assert summary["errors"]["value"] == 0 and summary["checks"]["value"] == 1
    # The global auditor at the end of the e2e suite (test_place_order.py, after
    # this module) checks that every answered order was stored, these included.
    ANSWERED.setdefault(str(local_mesh.var_dir), []).extend(answered)

    # Every call carried a sampled traceparent of its own, and the order's trace
    # is the one k6 started for the PlaceOrder that answered it.
    attempts = [
        line["data"]["metadata"]["trace_id"]
        for line in map(json.loads, samples.read_text().splitlines())
        if line.get("type") == "Point"
        and line["metric"] == "grpc_req_duration"
        and line["data"]["tags"].get("rpc") == "PlaceOrder"
    ]
    assert len(set(attempts)) == len(attempts) >= len(answered), "a fresh trace id per call"
    channel = grpc.aio.insecure_channel(local_mesh.address("order"))
    stub = order_pb2_grpc.OrderServiceStub(channel)
    found: list[order_pb2.Order] = []

    async def stored() -> bool:
        try:
            found[:] = [await stub.GetOrder(order_pb2.GetOrderRequest(order_id=answered[-1]), timeout=5)]
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND, error
            return False
        return True

    try:
        await eventually(stored, within=20, what=f"order {answered[-1]} stored")
    finally:
        await channel.close(grace=None)
    assert found[0].trace_id in attempts
