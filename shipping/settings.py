from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mesh.settings import ServiceSettings


class ShippingSettings(ServiceSettings):
    service_name: ClassVar[str] = "shipping"

    grpc_port: int = Field(50055, ge=0, le=65535)
    metrics_port: int = Field(9105, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///var/embedded/shipping.db"
    # Fault injection (for SHIP_FAILED and recovery tests): latency is spent
    # after the shipment is stored; failures refuse before anything is stored.
    shipping_latency_seconds: float = Field(0.0, ge=0)
    shipping_failure_rate: float = Field(0.0, ge=0, le=1)
