"""The RocketMQ 5 transport, over the official ``rocketmq-python-client`` 5.x
(gRPC to the 5.x proxy; the older ``rocketmq-client-python`` wraps a native
4.x library that speaks the remoting protocol).

The SDK is thread-based: blocking calls run in a small executor of ours and
its futures are awaited with ``asyncio.wrap_future``, so the event loop never
blocks.

- ``client``: configuration, the executor, the start-up topic check;
- ``wire``: messages to and from RocketMQ, and the batch send below the SDK;
- ``forwarder``: relays an outbox stream to a topic;
- ``consumer``: topic batches into bus handlers, acknowledged after the effect;
- ``dead_letters``: the ``%DLQ%`` queues into the ``dead_letters`` table, and replay.
"""

from mesh.bus.rocketmq.client import PERMANENT, MissingTopic, RocketClient
from mesh.bus.rocketmq.consumer import FailureReasons, RocketConsumer, RocketConsumerConfig
from mesh.bus.rocketmq.forwarder import Forwarder
from mesh.bus.rocketmq.wire import from_rocket, to_rocket

__all__ = [
    "PERMANENT",
    "FailureReasons",
    "Forwarder",
    "MissingTopic",
    "RocketClient",
    "RocketConsumer",
    "RocketConsumerConfig",
    "from_rocket",
    "to_rocket",
]
