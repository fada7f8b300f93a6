from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mesh.settings import RedisServiceSettings


class CheckoutSettings(RedisServiceSettings):
    service_name: ClassVar[str] = "checkout"

    grpc_port: int = Field(50052, ge=0, le=65535)
    metrics_port: int = Field(9102, ge=0, le=65535)
    # Redis (redis_url): idempotency records of PlaceOrder and the outbox of payment events.
    catalog_address: str = "127.0.0.1:50051"
    payment_address: str = "127.0.0.1:50054"
    shipping_address: str = "127.0.0.1:50055"
    # Orders with a total at or above this wait for review (the catalog decides
    # when it reserves: it prices the order; its currency must be the order's).
    review_threshold_units: int = Field(10_000, ge=0)
    review_threshold_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    # The charge gets this long; past it the outcome is unknown and the order stays PENDING.
    payment_deadline_seconds: float = Field(3.0, gt=0)
    # While shipping is down, a GetQuote request it answered this recently is
    # answered again from memory (checkout.quotes); 0: never.
    quote_stale_seconds: float = Field(3600.0, ge=0)
    # Must equal the order context's number of databases: the shard is in the order id.
    order_shards: int = Field(1, ge=1, le=999)
    order_updates_stream: str = "events:order-updates"
    # How long the answer to a request_id is remembered.
    idempotency_ttl_seconds: int = Field(24 * 3600, ge=60)
    # A duplicate waits this long for the first attempt's answer; an attempt
    # that left no answer for longer than the takeover time is taken over.
    duplicate_wait_seconds: float = Field(10.0, gt=0)
    takeover_after_seconds: float = Field(30.0, gt=0)
    max_lines_per_order: int = Field(100, ge=1)
    max_units_per_line: int = Field(1000, ge=1)
