"""The whole local mesh, started once for the e2e suite on private ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.mesh import PROFILES, LocalMesh, free_offset
from launcher.topology import mesh_topology
from mesh.local.jaeger import JaegerServer
from mesh.local.procs import RedisServer
from mesh.local.rocketmq import RocketMQServer


@pytest.fixture(scope="session")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JaegerServer]:
    """One Jaeger every e2e mesh sends its spans to (as `make run TRACING=1`)."""
    server = JaegerServer(tmp_path_factory.mktemp("jaeger")).start()
    yield server
    server.stop()


@pytest.fixture(
    scope="session",
    params=["embedded", pytest.param("full", marks=[pytest.mark.rocketmq, pytest.mark.mariadb])],
)
def local_mesh(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    jaeger: JaegerServer,
) -> Iterator[LocalMesh]:
    """The mesh on each profile in turn: every e2e test runs on Redis Streams +
    SQLite, then on RocketMQ + MariaDB (the broker started here, before the mesh)."""
    var_dir: Path = tmp_path_factory.mktemp(f"mesh-{request.param}")
    profile = PROFILES[request.param]
    mariadb = request.getfixturevalue("mariadb_server") if profile.database == "mariadb" else None
    # A Redis database of its own per profile: stock counters outlive a mesh.
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{list(PROFILES).index(request.param)}"
    rocketmq = None
    if profile.transport == "rocketmq":
        # Started before the mesh's ports are chosen, so they cannot collide with the broker's.
        topology = mesh_topology()
        rocketmq = RocketMQServer(var_dir / "rocketmq", topology.topics, topology.groups)
    try:
        if rocketmq is not None:
            rocketmq.start()
        mesh = LocalMesh(
            var_dir,
            offset=free_offset(),
            redis_url=redis_url,
            profile=profile,
            mariadb=mariadb,
            rocketmq=rocketmq,
            jaeger=jaeger,
        )
        try:
            mesh.start(timeout=180)
            yield mesh
        finally:
            mesh.stop()
    finally:
        if rocketmq is not None:
            rocketmq.stop()
