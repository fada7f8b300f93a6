from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mesh.settings import ConsumerServiceSettings


class AnalyticsSettings(ConsumerServiceSettings):
    service_name: ClassVar[str] = "analytics"

    grpc_port: int = Field(50056, ge=0, le=65535)
    metrics_port: int = Field(9106, ge=0, le=65535)
    # The read model's own database (SQLAlchemy URL); it can be rebuilt from the
    # events, or caught up from the order shards by ``python -m analytics backfill``.
    database_url: str = Field("sqlite+aiosqlite:///var/embedded/analytics.db", min_length=1)
    # The order context's DATABASE_URLS (one URL per shard, comma-separated), as
    # the auditor names them: read, never written, by the backfill only.
    order_database_urls: str = Field("sqlite+aiosqlite:///var/embedded/order-0.db", min_length=1)
    # Orders per read of a shard, and per transaction of the read model.
    backfill_page_size: int = Field(500, ge=1, le=5000)
    # The catalog's OrderPlaced stream and the order outbox's OrderStatusChanged
    # stream (every order shard relays to it): the same names as in those contexts.
    order_placed_stream: str = "events:order-placed"
    order_status_stream: str = "events:order-status"
    # A group of its own on each stream: every event reaches analytics as well as
    # the order context's groups, and neither holds the other back.
    consumer_group: str = "analytics"
    dead_letter_group: str = "analytics-dead-letters"

    @property
    def order_shard_urls(self) -> list[str]:
        return [url.strip() for url in self.order_database_urls.split(",") if url.strip()]

    def subscriptions(self) -> list[tuple[str, str]]:
        """(stream, consumer group) of every consumer here: what a RocketMQ broker must hold."""
        return [
            (self.order_placed_stream, self.consumer_group),
            (self.order_status_stream, self.consumer_group),
        ]
