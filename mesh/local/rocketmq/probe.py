"""QueryRoute through the proxy: the test that a topic is really usable."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from rocketmq.grpc_protocol import (
    Address,
    AddressScheme,
    Endpoints,
    MessagingServiceStub,
    QueryRouteRequest,
    Resource,
)
from rocketmq.grpc_protocol.definition_pb2 import Code, MessageType

# Through the official client's generated stubs, over a blocking channel of our own.

CODE_OK = Code.OK
CODE_TOPIC_NOT_FOUND = Code.TOPIC_NOT_FOUND


@dataclass(frozen=True)
class Route:
    """What the proxy answered to QueryRoute for one topic."""

    code: int
    message: str
    queues: int
    message_types: frozenset[str]

    @property
    def ok(self) -> bool:
        return self.code == CODE_OK and self.queues > 0


def _probe_metadata() -> tuple[tuple[str, str], ...]:
    # The proxy rejects calls without the client headers that every 5.x SDK sends.
    return (
        ("x-mq-language", "PYTHON"),
        ("x-mq-client-id", f"ordermesh-probe-{uuid.uuid4().hex[:12]}"),
        ("x-mq-protocol", "v2"),
        ("x-mq-client-version", "5.0.0"),
    )


def probe_channel(endpoint: str) -> grpc.Channel:
    # Short reconnect backoff: the default grows to minutes, and a probe that starts while the
    # proxy is still binding would then sleep through the moment it becomes ready.
    return grpc.insecure_channel(
        endpoint,
        options=[
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ],
    )


def query_route_on(channel: grpc.Channel, endpoint: str, topic: str, timeout: float) -> Route:
    host, _, port = endpoint.rpartition(":")
    request = QueryRouteRequest(
        topic=Resource(name=topic),
        endpoints=Endpoints(scheme=AddressScheme.IPv4, addresses=[Address(host=host, port=int(port))]),
    )
    reply: Any = MessagingServiceStub(channel).QueryRoute(request, timeout=timeout, metadata=_probe_metadata())
    types = {MessageType.Name(t) for q in reply.message_queues for t in q.accept_message_types}
    return Route(int(reply.status.code), str(reply.status.message), len(reply.message_queues), frozenset(types))


def query_route(grpc_endpoint: str, topic: str, timeout: float = 2.0) -> Route:
    """One gRPC QueryRoute through the proxy; raises grpc.RpcError when the proxy does not answer."""
    with probe_channel(grpc_endpoint) as channel:
        return query_route_on(channel, grpc_endpoint, topic, timeout)
