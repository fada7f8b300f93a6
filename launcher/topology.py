"""The topics and consumer groups the whole mesh needs on a RocketMQ broker."""

from __future__ import annotations

from mesh.bus.topology import Topology
from order.settings import OrderSettings


def mesh_topology() -> Topology:
    """The order context consumes every topic the mesh has: its subscriptions are the topology."""
    settings = OrderSettings()
    return Topology.of(settings.subscriptions(), settings.consumer_max_attempts)
