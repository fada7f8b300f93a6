"""The analytics process's settings, its broker topology and its consumers' outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

import pytest

from analytics.bootstrap import Components, routes
from analytics.facts import Event
from analytics.handlers import OrderEvents
from analytics.settings import AnalyticsSettings
from auditor.settings import AuditSettings
from catalog.settings import CatalogSettings
from mesh.bus import Message
from mesh.bus.topology import Topology
from mesh.settings import load_settings
from order.settings import OrderSettings
from ordermesh.common.v1 import common_pb2
from tests.analytics_support import money, order_placed, status_changed

NOW = datetime(2030, 1, 2, tzinfo=UTC)


def test_defaults_are_the_local_ports_and_the_streams_the_events_are_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRPC_PORT", "METRICS_PORT", "ORDER_PLACED_STREAM", "ORDER_STATUS_STREAM", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(AnalyticsSettings)
    assert (settings.grpc_port, settings.metrics_port) == (50056, 9106)
    assert settings.database_url == "sqlite+aiosqlite:///var/embedded/analytics.db"
    assert settings.order_placed_stream == CatalogSettings().order_stream  # the catalog appends OrderPlaced
    assert settings.order_status_stream == OrderSettings().order_status_stream  # the order outbox relays here


def test_the_backfill_reads_the_order_shards_under_the_auditors_name_for_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDER_DATABASE_URLS", raising=False)
    assert AnalyticsSettings().order_database_urls == AuditSettings().order_database_urls
    monkeypatch.setenv("ORDER_DATABASE_URLS", " sqlite+aiosqlite:///a.db, sqlite+aiosqlite:///b.db ,")
    assert load_settings(AnalyticsSettings).order_shard_urls == ["sqlite+aiosqlite:///a.db", "sqlite+aiosqlite:///b.db"]


def test_the_analytics_topology_is_a_group_of_its_own_on_both_topics() -> None:
    topology = Topology.of(AnalyticsSettings().subscriptions(), max_attempts=5)
    assert topology.topics == {
        "ordermesh-order-placed": "NORMAL",
        "ordermesh-order-status": "NORMAL",
        "%DLQ%ordermesh-analytics": "NORMAL",
    }
    assert topology.groups["ordermesh-analytics"] == 4
    # The order context's groups on the same topics are others: each gets every event.
    assert "ordermesh-analytics" not in Topology.of(OrderSettings().subscriptions(), 5).groups


def test_the_consumers_are_the_subscriptions() -> None:
    settings = AnalyticsSettings()
    parts = cast(Components, SimpleNamespace(store=None, clock=lambda: NOW))
    assert [(r.stream, r.group) for r in routes(parts, settings)] == settings.subscriptions()


class Sink:
    """analytics.ports.EventSink that refuses the events it is told to."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.batches: list[list[str]] = []

    async def apply(self, events: Sequence[Event], now: datetime) -> dict[str, str]:
        self.batches.append([e.event_id for e in events])
        return {e.event_id: "cannot be stored" for e in events if e.event_id in self.refuse}


def message(n: int, payload: bytes) -> Message:
    return Message(f"{n}-0", "events:order-status", "OrderStatusChanged", "o0-a", payload)


async def test_a_malformed_or_unstorable_event_fails_alone_and_the_batch_is_one_apply() -> None:
    sink = Sink(refuse=frozenset({"too-big"}))
    good = status_changed("o0-a", common_pb2.PAID, NOW, event_id="good").SerializeToString()
    unstorable = order_placed("o0-b", NOW, [("sku-1", 1, money(1))], event_id="too-big").SerializeToString()
    batch = [message(1, good), message(2, b"\xff garbage"), message(3, unstorable)]
    outcome = await OrderEvents(sink, lambda: NOW)(batch)
    assert sink.batches == [["good", "too-big"]]
    assert set(outcome.failed) == {"2-0", "3-0"}
    assert outcome.failed["3-0"] == "cannot be stored"
    assert outcome.deferred == {}  # nothing waits: a status before its order is kept, not deferred
