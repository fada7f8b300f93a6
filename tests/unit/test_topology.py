"""RocketMQ names derived from the streams and groups: what the launcher creates is what processes use."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from launcher.topology import mesh_topology
from mesh.bus.topology import DEAD_LETTER_GROUP, Topology, dlq_topic, group_for, topic_for
from mesh.clock import utc_now
from order.bootstrap import Components, routes
from order.settings import OrderSettings


def test_names_drop_the_stream_prefix_and_add_the_mesh_prefix() -> None:
    assert topic_for("events:order-placed") == "ordermesh-order-placed"
    assert topic_for("plain") == "ordermesh-plain"
    assert group_for("dispatcher") == "ordermesh-dispatcher"
    assert dlq_topic("ordermesh-order") == "%DLQ%ordermesh-order"


def test_the_order_contexts_topology() -> None:
    topology = Topology.of(OrderSettings().subscriptions(), max_attempts=5)
    assert topology.topics == {
        "ordermesh-order-placed": "NORMAL",
        "ordermesh-order-updates": "NORMAL",
        "ordermesh-order-status": "NORMAL",
        "%DLQ%ordermesh-order": "NORMAL",
        "%DLQ%ordermesh-dispatcher": "NORMAL",
        "%DLQ%ordermesh-compensator": "NORMAL",
    }
    # Five deliveries in all: the first and four retries.
    assert {g: topology.groups[g] for g in ("ordermesh-order", "ordermesh-dispatcher", "ordermesh-compensator")} == {
        "ordermesh-order": 4,
        "ordermesh-dispatcher": 4,
        "ordermesh-compensator": 4,
    }
    # A dead letter arrives with its spent delivery count: the intake must allow more.
    assert topology.groups[DEAD_LETTER_GROUP] > 4


def test_the_order_contexts_routes_are_the_subscriptions_its_broker_topology_is_made_from() -> None:
    settings = OrderSettings()
    parts = cast(Components, SimpleNamespace(shards=None, clock=utc_now, lifecycle=None, remote=None, metrics=None))
    assert [(r.stream, r.group) for r in routes(parts, settings)] == settings.subscriptions()


def test_each_consuming_context_reads_its_dead_letters_in_a_group_of_its_own() -> None:
    """RocketMQ expects every consumer of a group to subscribe to the same topics:
    the order context's intake and analytics' read different DLQs, so each has its own group."""
    topology = mesh_topology()
    assert {DEAD_LETTER_GROUP, "ordermesh-analytics-dead-letters"} <= set(topology.groups)
    assert {"%DLQ%ordermesh-order", "%DLQ%ordermesh-analytics"} <= set(topology.topics)
