"""``python -m mesh.probe [SERVICE]``: exit 0 if this process's gRPC health
check answers SERVING, else 1. For runtimes without native gRPC probes (a
compose healthcheck); Kubernetes probes gRPC itself.

SERVICE: ``readiness`` (default: dependencies answer) or ``""`` (liveness).
The port is the process's own GRPC_PORT.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> None:
    service = sys.argv[1] if len(sys.argv) > 1 else "readiness"
    target = f"127.0.0.1:{os.environ.get('GRPC_PORT', '50051')}"
    with _channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name}", file=sys.stderr)
            raise SystemExit(1) from None
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    print(f"{target} {service or 'liveness'}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    raise SystemExit(0 if serving else 1)


def _channel(target: str) -> grpc.Channel:
    """Plaintext, or mutual TLS with the process's own certificate (TLS_* settings)."""
    files = [os.environ.get(name, "") for name in ("TLS_CA_FILE", "TLS_KEY_FILE", "TLS_CERT_FILE")]
    if not all(files):
        return grpc.insecure_channel(target)
    ca, key, cert = (Path(f).read_bytes() for f in files)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(target, credentials)


if __name__ == "__main__":
    main()
