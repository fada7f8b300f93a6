"""The whole local mesh, started once for the e2e suite on private ports."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.local.mesh import LocalMesh, endpoints
from mesh.local.procs import RedisServer, port_open


def free_offset() -> int:
    """A port offset where every gRPC and metrics port of the mesh is free."""
    for _ in range(50):
        offset = random.randrange(1000, 9000, 10)
        ports = [p for e in endpoints(offset) for p in (e.grpc_port, e.metrics_port)]
        if not any(port_open(p) for p in ports):
            return offset
    raise RuntimeError("no free port range for the mesh")


@pytest.fixture(scope="session")
def local_mesh(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[LocalMesh]:
    var_dir: Path = tmp_path_factory.mktemp("mesh")
    mesh = LocalMesh(var_dir, offset=free_offset(), redis_url=redis_server.url)
    try:
        mesh.start(timeout=90)
    except Exception:
        mesh.stop()
        raise
    yield mesh
    mesh.stop()
