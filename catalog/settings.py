from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mesh.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    service_name: ClassVar[str] = "catalog"

    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9101, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///var/catalog.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Load the bundled seed catalogue into an empty products table at start.
    catalog_seed: bool = True
