"""A real RocketMQ 5 broker on loopback for development and tests.

Two JVMs from the jars that ``scripts/setup/rocketmq.sh`` installs in
``.tools/rocketmq/lib``: the name server, then the proxy in local mode, which
runs the broker in its own JVM. Clients of the 5.x SDKs talk gRPC to the proxy
(``grpc_endpoint``). Ports not given are picked free at the first start, so
several instances (and the other tests) can run side by side. The command lines, files,
timings and gotchas behind every choice here are in
``scripts/setup/ROCKETMQ-NOTES.md``.

Stand-alone: ``python -m mesh.local.rocketmq`` (the mesh's topics and groups),
or with ``--topic T1 --group G1`` for others.
"""

from mesh.local.rocketmq.admin import ensure_topics
from mesh.local.rocketmq.probe import CODE_OK, CODE_TOPIC_NOT_FOUND, Route, query_route
from mesh.local.rocketmq.server import RocketMQServer

__all__ = ["CODE_OK", "CODE_TOPIC_NOT_FOUND", "RocketMQServer", "Route", "ensure_topics", "query_route"]
