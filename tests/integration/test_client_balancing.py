"""Client-side balancing over several addresses (a headless Service's pods):
round_robin with the health check the chart turns on sends calls only to
addresses whose readiness is SERVING, and follows a change of it."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry import trace

from mesh.clients import make_channel
from mesh.local.procs import free_port
from tests.support import eventually

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class Pod:
    """A gRPC server that answers its name, with a readiness health service."""

    def __init__(self, name: str) -> None:
        self.name, self.port = name, free_port()
        self.server = grpc.aio.server()
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)

        async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return name.encode()

        handler = grpc.method_handlers_generic_handler("test.Pod", {"Who": grpc.unary_unary_rpc_method_handler(who)})
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")

    async def ready(self, serving: bool) -> None:
        await self.health.set("readiness", SERVING if serving else NOT_SERVING)


@pytest.fixture
async def pods() -> AsyncIterator[list[Pod]]:
    started = [Pod("a"), Pod("b")]
    for pod in started:
        await pod.server.start()
    yield started
    for pod in started:
        await pod.server.stop(None)


async def calls(channel: grpc.aio.Channel, count: int) -> Counter[str]:
    who = channel.unary_unary("/test.Pod/Who", None, None)
    answers = [await who(b"", timeout=5) for _ in range(count)]
    return Counter(a.decode() for a in answers)


@pytest.mark.parametrize("health_check, spreads_to_unready", [("readiness", False), ("", True)])
async def test_calls_go_only_to_ready_addresses(pods: list[Pod], health_check: str, spreads_to_unready: bool) -> None:
    a, b = pods
    await a.ready(True)
    await b.ready(False)
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    channel = make_channel(target, tracer=trace.get_tracer("test"), default_timeout=5, health_check=health_check)
    async with channel:
        first = await calls(channel, 40)
        # Without the health check, round_robin spreads over both (the control).
        assert (first["b"] > 0) is spreads_to_unready, first
        if not spreads_to_unready:
            await b.ready(True)

            async def both() -> bool:
                return (await calls(channel, 20))["b"] > 0

            await eventually(both, 10, "calls to reach b once it is ready")
            await a.ready(False)

            async def only_b() -> bool:
                return set(await calls(channel, 20)) == {"b"}

            await eventually(only_b, 10, "calls to leave a once it is not ready")
