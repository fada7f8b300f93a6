"""Where the auditor reads: every context's database and the catalog's Redis.

The defaults are the local mesh's (``make run``: SQLite files under ``var/embedded/``,
Redis on 6379), so ``make audit`` needs nothing else there. Elsewhere each
value comes from the environment under the name shown (``ORDER_DATABASE_URLS``
is the order context's ``DATABASE_URLS``: one URL per shard, comma-separated).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuditSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    catalog_database_url: str = "sqlite+aiosqlite:///var/embedded/catalog.db"
    order_database_urls: str = "sqlite+aiosqlite:///var/embedded/order-0.db"
    payment_database_url: str = "sqlite+aiosqlite:///var/embedded/payment.db"
    shipping_database_url: str = "sqlite+aiosqlite:///var/embedded/shipping.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    catalog_key_prefix: str = "catalog"
    # The order context's ORDER_TIMEOUT_SECONDS: an unpaid or unreviewed order
    # older than this (plus the grace reconcile needs to notice) is a violation.
    order_timeout_seconds: float = Field(30 * 60, gt=0)
    pending_grace_seconds: float = Field(60.0, ge=0)

    @property
    def order_urls(self) -> list[str]:
        return [url.strip() for url in self.order_database_urls.split(",") if url.strip()]
