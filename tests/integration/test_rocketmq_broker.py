"""The real RocketMQ 5 broker of mesh.local.rocketmq: start, route, create topics live, crash, stop.

Each test starts its own name server + proxy JVMs on free ports under tmp_path
(about 10 s to start, 12 s to stop gracefully), so they are marked ``rocketmq``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh.local.procs import port_open
from mesh.local.rocketmq import CODE_TOPIC_NOT_FOUND, RocketMQServer, ensure_topics, query_route

pytestmark = [pytest.mark.rocketmq, pytest.mark.timeout(300)]


def _gone(pid: int) -> bool:
    # The launcher reaps its children, so an exited JVM leaves no /proc entry (not even a zombie).
    return not Path(f"/proc/{pid}").exists()


def _subscription_groups(server: RocketMQServer) -> dict[str, dict[str, object]]:
    data = json.loads((server.store_dir / "config" / "subscriptionGroup.json").read_text())
    groups: dict[str, dict[str, object]] = data["subscriptionGroupTable"]
    return groups


def test_broker_starts_routes_seeded_and_created_topics_and_stops(tmp_path: Path) -> None:
    server = RocketMQServer(tmp_path / "rocketmq", {"OrderEvents": "NORMAL"}, {"OrderWorkers": 3})
    try:
        server.start()
        pids = server.pids
        assert len(pids) == 2
        endpoint = server.grpc_endpoint

        seeded = query_route(endpoint, "OrderEvents")
        assert seeded.ok, seeded
        assert seeded.queues == 4
        assert seeded.message_types == {"NORMAL"}
        assert query_route(endpoint, "ShipmentEvents").code == CODE_TOPIC_NOT_FOUND

        # Asked for once before it exists (as above), the topic must still route right after the create.
        ensure_topics(server, {"ShipmentEvents": "FIFO"}, {"ShipmentWorkers": 5})
        created = query_route(endpoint, "ShipmentEvents")
        assert created.ok, created
        assert created.message_types == {"FIFO"}
        ensure_topics(server, {"ShipmentEvents": "FIFO"})  # idempotent: already there, nothing to do

        groups = _subscription_groups(server)
        assert groups["OrderWorkers"]["retryMaxTimes"] == 3
        assert groups["ShipmentWorkers"]["retryMaxTimes"] == 5
    finally:
        server.stop()

    assert server.pids == []
    assert all(_gone(pid) for pid in pids)
    assert server.ports is not None
    assert not any(port_open(port) for port in server.ports.all())


def test_killed_broker_restarts_on_the_same_ports_with_its_topics(tmp_path: Path) -> None:
    server = RocketMQServer(tmp_path / "rocketmq", {"OrderEvents": "NORMAL"})
    try:
        server.start()
        ports, pids = server.ports, server.pids
        ensure_topics(server, {"PaymentEvents": "NORMAL"})

        server.kill()
        assert all(_gone(pid) for pid in pids)
        assert (server.store_dir / "abort").exists()  # the crash marker the broker recovers from

        server.restart()
        assert server.ports == ports
        assert server.pids and set(server.pids).isdisjoint(pids)
        for topic in ("OrderEvents", "PaymentEvents"):
            route = query_route(server.grpc_endpoint, topic)
            assert route.ok, (topic, route)
    finally:
        server.stop()
    assert server.pids == []
