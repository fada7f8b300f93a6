"""The forwarder's multi-message sends without a broker: how a batch is cut into
SendMessage calls, which answers count as "all stored", and the fallback to one
message per call. The real proxy's answers are in
tests/integration/test_rocketmq_multi_send.py."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from rocketmq.grpc_protocol.definition_pb2 import Code
from rocketmq.grpc_protocol.service_pb2 import SendMessageResponse
from rocketmq.v5.client.balancer import QueueSelector
from rocketmq.v5.exception import BadRequestException, InternalErrorException

from mesh.bus import Message, encode_fields
from mesh.bus.metrics import BusMetrics
from mesh.bus.rocketmq import Forwarder, RocketClient
from mesh.bus.rocketmq.wire import CALL_BYTES, Call, NotStored, build_calls, check_stored
from ordermesh.events.v1 import events_pb2

TOPIC = "ordermesh-order-updates"


def event(n: int, reason: str = "declined") -> Message:
    fields = encode_fields(
        events_pb2.Envelope(
            event_id=uuid.uuid4().hex,
            order_id=f"o{n}",
            trace_context={"traceparent": f"00-{n + 1:032x}-{n + 1:016x}-01"},
            payment_declined=events_pb2.PaymentDeclined(reason=reason),
        )
    )
    return Message(f"{n}-0", "events:order-updates", str(fields["type"]), f"o{n}", cast(bytes, fields["event"]))


class FakeProducer:
    """What build_calls asks of the SDK's producer."""

    def __init__(self) -> None:
        self.route_manager = SimpleNamespace(retrieve_topic_route_data=lambda topic: topic)
        self.client_configuration = SimpleNamespace(namespace="")
        self.signed = 0

    def sign(self) -> tuple[tuple[str, str], ...]:
        self.signed += 1
        return (("x-mq-client-id", "test"),)


@pytest.fixture(autouse=True)
def one_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = SimpleNamespace(endpoints="endpoints")
    selector = SimpleNamespace(select_next_queue=lambda: queue)
    monkeypatch.setattr(QueueSelector, "producer_queue_selector", lambda route: selector)


def calls_of(batch: list[Message], per_call: int) -> list[Call]:
    producer = FakeProducer()
    endpoints, calls = build_calls(cast(Any, producer), TOPIC, batch, per_call)
    assert endpoints == "endpoints"
    assert producer.signed == sum(call.error is None for call in calls)  # each call signed on its own
    return calls


def test_a_batch_is_cut_into_calls_in_stream_order_each_message_with_its_own_id_key_tag_and_trace() -> None:
    batch = [event(n) for n in range(70)]
    calls = calls_of(batch, 32)
    assert [len(call.messages) for call in calls] == [32, 32, 6]
    assert [m for call in calls for m in call.messages] == batch
    wires = [w for call in calls for w in cast(Any, call.request).messages]
    assert [w.topic.name for w in wires] == [TOPIC] * 70  # one topic per call: the proxy refuses mixed ones
    assert len({w.system_properties.message_id for w in wires}) == 70
    assert [list(w.system_properties.keys) for w in wires] == [[f"o{n}"] for n in range(70)]
    assert {w.system_properties.tag for w in wires} == {"PaymentDeclined"}
    assert [w.user_properties["traceparent"] for w in wires] == [f"00-{n + 1:032x}-{n + 1:016x}-01" for n in range(70)]
    assert [w.user_properties["stream_id"] for w in wires] == [f"{n}-0" for n in range(70)]


def test_one_per_call_is_the_old_way() -> None:
    calls = calls_of([event(n) for n in range(5)], 1)
    assert [len(call.messages) for call in calls] == [1] * 5
    assert [len(cast(Any, call.request).messages) for call in calls] == [1] * 5


def test_a_call_stops_growing_before_the_size_the_broker_refuses_whole() -> None:
    big = "x" * (CALL_BYTES // 5)
    calls = calls_of([event(n, big) for n in range(10)], 32)
    assert [len(call.messages) for call in calls] == [4, 4, 2]
    assert all(cast(Any, call.request).ByteSize() <= CALL_BYTES for call in calls)
    # A message larger than the bound alone still goes, alone: the broker judges it.
    [alone] = calls_of([event(0, "x" * (CALL_BYTES + 1))], 32)
    assert len(alone.messages) == 1


def test_a_message_that_cannot_be_built_is_a_call_of_its_own_with_its_error() -> None:
    first, second, third = event(0), event(1), event(2)
    broken = Message("1-0", "events:order-updates", "PaymentDeclined", " ", second.payload)  # a blank key
    calls = calls_of([first, broken, third], 32)
    # Each message keeps its place: the one after the broken one starts a new call.
    assert [(c.messages, c.error is not None) for c in calls] == [([first], False), ([broken], True), ([third], False)]


def reply(code: int, *entries: int) -> SendMessageResponse:
    answer = SendMessageResponse()
    answer.status.code = code
    for entry_code in entries:
        answer.entries.add().status.code = entry_code
    return answer


def test_one_ok_receipt_for_a_call_of_several_or_one_per_message_means_all_stored() -> None:
    check_stored(reply(Code.OK, Code.OK), 32)  # the proxy's answer to a call of several
    check_stored(reply(Code.OK, *[Code.OK] * 32), 32)  # the protocol's, once the proxy answers per message
    check_stored(reply(Code.OK, Code.OK), 1)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (reply(Code.MULTIPLE_RESULTS, Code.OK, Code.INTERNAL_SERVER_ERROR), NotStored),  # the SDK lets it pass
        (reply(Code.OK, Code.OK, Code.OK), NotStored),  # 2 receipts for 32: neither one nor all
        (reply(Code.OK), NotStored),  # no receipt
        (reply(Code.OK, Code.MASTER_PERSISTENCE_TIMEOUT), NotStored),
        (reply(Code.INTERNAL_SERVER_ERROR), InternalErrorException),  # e.g. "message body size exceeded"
        (reply(Code.MESSAGE_CORRUPTED), BadRequestException),  # e.g. two topics in one call
    ],
)
def test_any_other_answer_is_not_all_stored(answer: SendMessageResponse, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_stored(answer, 32)


class ScriptedForwarder(Forwarder):
    """The broker's side scripted: calls of several fail (or not), lone sends by key."""

    def __init__(self, registry: CollectorRegistry, *, several_fail: bool, lone_fail: set[str]) -> None:
        metrics = BusMetrics.of(registry)
        super().__init__(
            cast(RocketClient, None),
            cast(Any, None),
            TOPIC,
            per_call=4,
            relayed=metrics.relayed.labels("s"),
            calls=metrics.send_calls.labels("s"),
            fallbacks=metrics.fallbacks.labels("s"),
        )
        self.several_fail = several_fail
        self.lone_fail = lone_fail
        self.rounds: list[list[int]] = []  # call sizes per round of _send_calls
        self.sdk: list[str] = []  # messages sent alone through the SDK

    async def _send_calls(self, batch: list[Message], per_call: int) -> list[tuple[Call, BaseException]]:
        calls = [Call(batch[i : i + per_call]) for i in range(0, len(batch), per_call)]
        self.rounds.append([len(call.messages) for call in calls])
        assert self._calls is not None
        self._calls.inc(len(calls))
        failed: list[tuple[Call, BaseException]] = []
        for call in calls:
            several = len(call.messages) > 1
            if (several and self.several_fail) or (not several and call.messages[0].order_id in self.lone_fail):
                failed.append((call, NotStored("scripted")))
        return failed

    async def _send(self, message: Message) -> str:
        assert self._calls is not None
        self._calls.inc()
        self.sdk.append(message.order_id)
        if message.order_id == "o3":
            raise BadRequestException("scripted rejection", Code.ILLEGAL_MESSAGE_PROPERTY_KEY)
        return "id"


def counted(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(f"ordermesh_forwarder_{name}_total", {"stream": "s"})


async def test_calls_of_several_that_are_stored_are_all_it_takes() -> None:
    registry = CollectorRegistry()
    forwarder = ScriptedForwarder(registry, several_fail=False, lone_fail=set())
    outcome = await forwarder([event(n) for n in range(10)])
    assert not outcome.failed
    assert forwarder.rounds == [[4, 4, 2]] and forwarder.sdk == []
    assert (counted(registry, "send_calls"), counted(registry, "fallback_events")) == (3, 0)
    assert counted(registry, "relayed_events") == 10


async def test_a_call_of_several_not_stored_whole_is_sent_one_per_call_then_alone() -> None:
    registry = CollectorRegistry()
    # o5 fails one per call too: alone through the SDK it is stored; o3 the SDK refuses for good.
    forwarder = ScriptedForwarder(registry, several_fail=True, lone_fail={"o3", "o5"})
    outcome = await forwarder([event(n) for n in range(10)])
    assert forwarder.rounds == [[4, 4, 2], [1] * 10]
    assert forwarder.sdk == ["o3", "o5"]
    assert list(outcome.failed) == ["3-0"]  # rejected for good: dead-lettered after the maximum
    assert (counted(registry, "send_calls"), counted(registry, "fallback_events")) == (3 + 10 + 2, 10)
    assert counted(registry, "relayed_events") == 9


async def test_one_per_call_falls_back_only_to_sending_alone() -> None:
    registry = CollectorRegistry()
    forwarder = ScriptedForwarder(registry, several_fail=True, lone_fail={"o1"})
    forwarder._per_call = 1
    outcome = await forwarder([event(n) for n in range(3)])
    assert forwarder.rounds == [[1, 1, 1]] and forwarder.sdk == ["o1"]
    assert not outcome.failed and counted(registry, "fallback_events") == 0


def test_per_call_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Forwarder(cast(RocketClient, None), cast(Any, None), TOPIC, per_call=0)
