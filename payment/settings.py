from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mesh.settings import ServiceSettings


class PaymentSettings(ServiceSettings):
    service_name: ClassVar[str] = "payment"

    grpc_port: int = Field(50054, ge=0, le=65535)
    metrics_port: int = Field(9104, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///var/embedded/payment.db"
    # Fault injection for breaker and reconciliation tests. The latency is
    # spent *after* the charge is stored, like a processor that answers late:
    # a caller that times out leaves a captured charge behind.
    payment_latency_seconds: float = Field(0.0, ge=0)
    # Share of charges refused as UNAVAILABLE before anything is stored.
    payment_failure_rate: float = Field(0.0, ge=0, le=1)
