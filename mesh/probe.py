"""``python -m mesh.probe [SERVICE]``: exit 0 if this process's gRPC health
check answers SERVING, else 1. For runtimes without native gRPC probes (a
compose healthcheck); Kubernetes probes gRPC itself.

SERVICE: ``readiness`` (default: dependencies answer) or ``""`` (liveness).
The port is the process's own GRPC_PORT.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.tls import credentials_from_files


def health_status(
    target: str, service: str = "", credentials: grpc.ChannelCredentials | None = None, timeout: float = 2.0
) -> int | None:
    """The health status ``target`` answers for ``service``; None if it does not answer."""
    channel = grpc.insecure_channel(target) if credentials is None else grpc.secure_channel(target, credentials)
    with channel:
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout).status)
        except grpc.RpcError:
            return None


def main() -> None:
    service = sys.argv[1] if len(sys.argv) > 1 else "readiness"
    target = f"127.0.0.1:{os.environ.get('GRPC_PORT', '50051')}"
    # Mutual TLS with the process's own certificate when its TLS_* settings say so.
    files = [os.environ.get(name, "") for name in ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE")]
    status = health_status(target, service, credentials_from_files(*files) if all(files) else None)
    name = "no answer" if status is None else health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    print(f"{target} {service or 'liveness'}: {name}")
    raise SystemExit(0 if status == health_pb2.HealthCheckResponse.SERVING else 1)


if __name__ == "__main__":
    main()
