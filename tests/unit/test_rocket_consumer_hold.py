"""RocketConsumer's hold of deferred messages, against a fake SimpleConsumer.

A status event received before its order is held in hand (no delivery
attempt spent) and retried after the OrderPlaced that arrives later, in the
order it was received. The broker-facing behaviour is covered against a real
broker in tests/integration/test_rocketmq_pipeline.py.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from opentelemetry.trace import NoOpTracer
from rocketmq.grpc_protocol.definition_pb2 import Code, Status
from rocketmq.grpc_protocol.service_pb2 import AckMessageResponse

from mesh.bus import BatchOutcome, Message
from mesh.bus.rocketmq import RocketClient, RocketConsumer, RocketConsumerConfig

T = TypeVar("T")


@dataclass
class FakeMessage:
    topic: str
    message_id: str
    body: bytes = b""
    tag: str = "Event"
    properties: dict[str, str] = field(default_factory=dict)
    delivery_attempt: int = 1
    endpoints: str = "proxy"
    receipt_handle: str = "r"


def done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


class FakeRpc:
    def __init__(self) -> None:
        self.acked: list[str] = []

    def ack_message_async(self, endpoints: Any, request: Any, metadata: Any, timeout: int) -> Future[Any]:
        self.acked += [entry.message_id for entry in request.entries]
        return done(AckMessageResponse(status=Status(code=Code.OK)))


class FakeSimpleConsumer:
    def __init__(self, batches: list[list[FakeMessage]]) -> None:
        self.batches = batches
        self.rpc_client = FakeRpc()
        self.invisible: list[tuple[str, int]] = []
        self.client_configuration = type("Config", (), {"request_timeout": 3})()

    def receive_async(self, count: int, invisible: int) -> Future[Any]:
        return done(self.batches.pop(0) if self.batches else [])

    def change_invisible_duration(self, message: FakeMessage, seconds: int) -> None:
        self.invisible.append((message.message_id, seconds))

    def sign(self) -> tuple[()]:
        return ()


class InlineClient:
    async def blocking(self, call: Callable[..., T], *args: Any) -> T:
        return call(*args)


async def test_a_deferred_message_is_held_then_handled_after_its_order_in_order() -> None:
    inserted: set[str] = set()
    calls: list[tuple[str, list[str]]] = []

    async def placed(batch: list[Message]) -> BatchOutcome:
        calls.append(("placed", [m.id for m in batch]))
        inserted.update(m.order_id for m in batch)
        return BatchOutcome()

    async def updates(batch: list[Message]) -> BatchOutcome:
        calls.append(("updates", [m.id for m in batch]))
        outcome = BatchOutcome()
        for message in batch:
            if message.order_id not in inserted:
                outcome.defer(message, "order not inserted yet")
        return outcome

    def msg(topic: str, message_id: str) -> FakeMessage:
        return FakeMessage(topic, message_id, properties={"order_id": "o-1"})

    fake = FakeSimpleConsumer([[msg("updates", "u1"), msg("updates", "u2")], [msg("placed", "p1")], []])
    consumer = RocketConsumer(
        cast(RocketClient, InlineClient()),
        "ordermesh-order",
        {"placed": placed, "updates": updates},
        RocketConsumerConfig(hold_retry_seconds=0),  # held ones are due at once: no sleeping
        NoOpTracer(),
    )
    consumer._consumer = cast(Any, fake)

    assert await consumer.poll() == 2  # both deferred: held, not acknowledged
    assert fake.rpc_client.acked == []
    assert await consumer.poll() == 3  # the OrderPlaced, then the held ones
    assert calls == [("updates", ["u1", "u2"]), ("placed", ["p1"]), ("updates", ["u1", "u2"])]
    assert sorted(fake.rpc_client.acked) == ["p1", "u1", "u2"]
    assert fake.invisible == []  # waiting made no message visible again: no attempt spent
    assert await consumer.poll() == 0
