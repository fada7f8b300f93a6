from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mesh.settings import ServiceSettings


class CheckoutSettings(ServiceSettings):
    service_name: ClassVar[str] = "checkout"

    grpc_port: int = Field(50052, ge=0, le=65535)
    metrics_port: int = Field(9102, ge=0, le=65535)
    # Idempotency records of PlaceOrder live here.
    redis_url: str = "redis://127.0.0.1:6379/0"
