"""The topics and consumer groups the whole mesh needs on a RocketMQ broker."""

from __future__ import annotations

from analytics.settings import AnalyticsSettings
from mesh.bus.topology import Topology
from order.settings import OrderSettings


def mesh_topology() -> Topology:
    """Every consumer's subscriptions: the order context consumes every topic the
    mesh has; analytics reads two of them in groups of its own."""
    return Topology.of(*_of(OrderSettings())) | Topology.of(*_of(AnalyticsSettings()))


def _of(settings: OrderSettings | AnalyticsSettings) -> tuple[list[tuple[str, str]], int, str]:
    return settings.subscriptions(), settings.consumer_max_attempts, settings.dead_letter_group
