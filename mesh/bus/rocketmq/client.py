"""The RocketMQ client configuration, its executor for blocking calls, and the
start-up check that every topic exists."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from rocketmq import ClientConfiguration, Credentials, FilterExpression, Producer, SimpleConsumer
from rocketmq.grpc_protocol import Address, AddressScheme, Endpoints, MessagingServiceStub, QueryRouteRequest, Resource
from rocketmq.grpc_protocol.definition_pb2 import Code
from rocketmq.v5.exception import (
    BadRequestException,
    ForbiddenException,
    IllegalArgumentException,
    NotFoundException,
    PayloadEmptyException,
    PayloadTooLargeException,
)

from mesh.errors import StartupError

T = TypeVar("T")

# Failures that a retry cannot fix: the message itself is wrong for the topic.
PERMANENT = (
    BadRequestException,
    ForbiddenException,
    IllegalArgumentException,
    NotFoundException,
    PayloadEmptyException,
    PayloadTooLargeException,
)


# What the proxy expects of a client on every call.
CLIENT_HEADERS = (
    ("x-mq-language", "PYTHON"),
    ("x-mq-protocol", "v2"),
    ("x-mq-client-version", "5.1.2"),
    ("x-mq-client-id", "ordermesh-route-check"),
)


class MissingTopic(StartupError):
    """A topic the process needs does not exist: refuse to start, naming it."""


class RocketClient:
    """Shared configuration and the executor for the client's blocking calls."""

    def __init__(self, endpoint: str, request_timeout: int = 10) -> None:
        # An int: given a float, the client fails deep inside ("cannot be interpreted as an integer").
        self.config = ClientConfiguration(endpoint, Credentials(), request_timeout=request_timeout)
        self.endpoint = endpoint
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rocketmq")

    async def blocking(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    async def producer(self, topics: list[str]) -> Producer:
        await self.require_topics(topics)
        producer = Producer(self.config, tuple(topics))
        await self.blocking(producer.startup)
        return producer

    async def consumer(self, group: str, topics: list[str], await_seconds: int) -> SimpleConsumer:
        await self.require_topics(topics)
        subscription = {topic: FilterExpression("*") for topic in topics}
        consumer = SimpleConsumer(self.config, group, subscription, await_duration=await_seconds)
        await self.blocking(consumer.startup)
        # A simple consumer's startup does not wait for the proxy's settings, and a
        # receive before they arrive fails on the proxy; wait for them here.
        if not await self.blocking(consumer._init_settings_event.wait, 10):
            raise RuntimeError(f"RocketMQ consumer {group!r} got no settings from {self.endpoint} in 10 s")
        return consumer

    async def require_topics(self, topics: list[str]) -> None:
        """Ask the proxy for each topic's route; 5.x never creates topics for gRPC
        clients, so a missing one must stop start-up, by name.

        A blocking channel in the client's executor: the client runs grpc.aio
        on its own event loop in a thread, and grpc.aio serves one loop per
        process, so this process's loop must not touch grpc.aio for RocketMQ.
        """
        await self.blocking(self._require_topics, topics)

    def _require_topics(self, topics: list[str]) -> None:
        host, _, port = self.endpoint.rpartition(":")
        endpoints = Endpoints(scheme=AddressScheme.IPv4, addresses=[Address(host=host, port=int(port))])
        with grpc.insecure_channel(self.endpoint) as channel:
            stub = MessagingServiceStub(channel)
            for topic in topics:
                reply = stub.QueryRoute(
                    QueryRouteRequest(topic=Resource(name=topic), endpoints=endpoints),
                    metadata=CLIENT_HEADERS,
                    timeout=10,
                )
                if reply.status.code != Code.OK or not reply.message_queues:
                    raise MissingTopic(
                        f"RocketMQ topic {topic!r} is not usable at {self.endpoint}: "
                        f"{Code.Name(reply.status.code)} {reply.status.message}"
                    )

    async def close(self, *clients: Any) -> None:
        for client in clients:
            await self.blocking(client.shutdown)
        self._executor.shutdown(wait=False)
