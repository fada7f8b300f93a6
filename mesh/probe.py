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


def main() -> None:
    service = sys.argv[1] if len(sys.argv) > 1 else "readiness"
    target = f"127.0.0.1:{os.environ.get('GRPC_PORT', '50051')}"
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name}", file=sys.stderr)
            raise SystemExit(1) from None
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    print(f"{target} {service or 'liveness'}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    raise SystemExit(0 if serving else 1)


if __name__ == "__main__":
    main()
