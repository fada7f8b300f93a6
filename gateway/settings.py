"""The gateway's settings: where the mesh is, the HTTP port, the event streams.

It extends the shared Redis settings (it tails the order event streams), so
the mesh-wide ones (deadlines, breakers, client health checks, TLS, tracing,
logging, shutdown) mean the same here as in every context. Its server is HTTP,
not gRPC: ``HTTP_HOST``/``HTTP_PORT`` bind it, and ``GRPC_*`` are unused.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from mesh.settings import RedisServiceSettings


class GatewaySettings(RedisServiceSettings):
    service_name: ClassVar[str] = "gateway"

    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    metrics_port: int = Field(9107, ge=0, le=65535)
    # One process per pod or machine: more gateways are more replicas behind
    # the load balancer, each tailing the streams on its own.
    workers: int = Field(1, ge=1, le=1)

    catalog_address: str = "127.0.0.1:50051"
    checkout_address: str = "127.0.0.1:50052"
    order_address: str = "127.0.0.1:50053"
    analytics_address: str = "127.0.0.1:50056"
    # PlaceOrder may wait for a duplicate's first attempt (checkout's
    # DUPLICATE_WAIT_SECONDS, 10 s) before it answers: longer than other calls.
    place_order_deadline_seconds: float = Field(15.0, gt=0)

    # The streams the order events are on: the catalog appends OrderPlaced, the
    # order outbox relay OrderStatusChanged (the same names as in those contexts).
    order_placed_stream: str = "events:order-placed"
    order_status_stream: str = "events:order-status"
    # Entries read per pass, and how long a read waits for new ones (below the
    # Redis socket timeout, checked at start-up).
    events_batch_size: int = Field(500, ge=1, le=10_000)
    events_block_ms: int = Field(1000, ge=10, le=60_000)
    # Operator events kept for Last-Event-ID resume; an older cursor gets `reset`.
    operator_ring_size: int = Field(2000, ge=1, le=1_000_000)
    # Events a slow operator client may have queued before its stream is closed
    # (it reconnects with Last-Event-ID and resumes from the ring).
    operator_queue_size: int = Field(1000, ge=1)
    sse_keepalive_seconds: float = Field(15.0, gt=0)
    # A per-order stream waits this long for an order that is not stored yet,
    # asking again every ORDER_POLL_SECONDS (and at once on an event for it).
    order_wait_seconds: float = Field(60.0, gt=0)
    order_poll_seconds: float = Field(0.5, gt=0)

    # Comma-separated origins allowed to call the API from a browser; "" turns CORS off.
    cors_origins: str = ""
    # The Jaeger UI; when set, every order carries `trace_url`, a link to its trace.
    jaeger_ui_url: str = ""
    # Largest request body accepted.
    max_body_bytes: int = Field(1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _reads_block_within_the_redis_timeout(self) -> GatewaySettings:
        if self.events_block_ms >= self.redis_timeout_seconds * 1000:
            raise ValueError(
                f"EVENTS_BLOCK_MS ({self.events_block_ms}) must be below REDIS_TIMEOUT_SECONDS "
                f"({self.redis_timeout_seconds}) in milliseconds, or every idle read times out"
            )
        return self

    @property
    def allowed_origins(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
