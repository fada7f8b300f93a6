from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mesh.settings import RedisServiceSettings


class CatalogSettings(RedisServiceSettings):
    service_name: ClassVar[str] = "catalog"

    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9101, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///var/embedded/catalog.db"
    # Fail fast on a dead Redis so the SQL path takes over quickly.
    redis_timeout_seconds: float = Field(1.0, gt=0)
    # Load the bundled seed catalogue into an empty products table at start.
    catalog_seed: bool = True
    catalog_key_prefix: str = "catalog"
    order_stream: str = "events:order-placed"
    max_lines_per_order: int = Field(100, ge=1)
    max_units_per_line: int = Field(1000, ge=1)
    # Reservation and release markers must outlive the longest an order can
    # still be released (review, payment window, shipping retries): a week.
    reservation_marker_ttl_seconds: int = Field(7 * 24 * 3600, ge=3600)
    product_cache_ttl_seconds: float = Field(30.0, gt=0)
    # Run the write-behind flusher in this process (it can also run alone:
    # `python -m catalog flusher`).
    flusher_enabled: bool = True
    flusher_batch_size: int = Field(200, ge=1, le=10_000)
    flusher_claim_idle_ms: int = Field(30_000, ge=100)
    # How often Redis is probed while this replica sells from SQL.
    stock_probe_interval_seconds: float = Field(0.5, gt=0)
    # "auto": Redis, with the SQL path while Redis is down. "sql": the SQL path
    # only (Redis maintenance; also the benchmark's baseline).
    stock_path: Literal["auto", "sql"] = "auto"
    # Quota: each selling product's counter is kept above this many seconds of
    # its recent sales, in refills of min..max units. More seconds: fewer
    # refills, but more units wait in Redis (unsellable from SQL if it fails).
    stock_low_water_seconds: float = Field(2.0, gt=0)
    stock_min_refill: int = Field(20, ge=1)
    stock_max_refill: int = Field(1000, ge=1)
    stock_refill_interval_seconds: float = Field(0.1, gt=0)
    # How long a reservation waits for an inline refill before UNAVAILABLE.
    stock_inline_refill_wait_seconds: float = Field(2.0, gt=0)
