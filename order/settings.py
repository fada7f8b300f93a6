from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mesh.settings import ServiceSettings


class OrderSettings(ServiceSettings):
    service_name: ClassVar[str] = "order"

    grpc_port: int = Field(50053, ge=0, le=65535)
    metrics_port: int = Field(9103, ge=0, le=65535)
