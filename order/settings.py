from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mesh.settings import ConsumerServiceSettings


class OrderSettings(ConsumerServiceSettings):
    service_name: ClassVar[str] = "order"

    grpc_port: int = Field(50053, ge=0, le=65535)
    metrics_port: int = Field(9103, ge=0, le=65535)
    # One SQLAlchemy URL per shard, comma-separated; orders shard by user id.
    # Changing the number of shards re-homes users: only on an empty system.
    database_urls: str = Field("sqlite+aiosqlite:///var/embedded/order-0.db", min_length=1)
    order_placed_stream: str = "events:order-placed"
    order_updates_stream: str = "events:order-updates"
    order_status_stream: str = "events:order-status"
    consumer_group: str = "order"
    catalog_address: str = "127.0.0.1:50051"
    payment_address: str = "127.0.0.1:50054"
    shipping_address: str = "127.0.0.1:50055"
    reconcile_after_seconds: float = Field(10.0, gt=0)
    # A PENDING order payment has no answer for is asked again after a backoff
    # doubling from RECONCILE_AFTER_SECONDS up to this.
    reconcile_backoff_max_seconds: float = Field(120.0, gt=0)
    # Unpaid (PENDING) and unreviewed (AWAITING_REVIEW) orders expire after this.
    order_timeout_seconds: float = Field(30 * 60, gt=0)
    ship_max_attempts: int = Field(5, ge=1)
    ship_backoff_seconds: float = Field(5.0, gt=0)
    # A SHIPPING claim this old belongs to a replica that died mid-ship: ship again
    # (ShipOrder is idempotent per order).
    ship_claim_timeout_seconds: float = Field(120.0, gt=0)
    # The money sweep checks a CANCELLED order with payment this long after the
    # cancel, and refunds a capture the compensator missed.
    money_settle_after_seconds: float = Field(60.0, ge=0)
    ship_concurrency: int = Field(16, ge=1)
    worker_interval_seconds: float = Field(1.0, gt=0)
    # How often every replica counts the orders waiting in PENDING, AWAITING_REVIEW
    # and SHIP_FAILED (the ordermesh_orders_in_status gauge): one GROUP BY per shard.
    status_count_interval_seconds: float = Field(5.0, gt=0)

    @property
    def shard_urls(self) -> list[str]:
        return [url.strip() for url in self.database_urls.split(",") if url.strip()]

    def subscriptions(self) -> list[tuple[str, str]]:
        """(stream, consumer group) of every consumer here: what a RocketMQ broker must hold."""
        return [
            (self.order_placed_stream, self.consumer_group),
            (self.order_updates_stream, self.consumer_group),
            (self.order_status_stream, "dispatcher"),
            (self.order_status_stream, "compensator"),
        ]
