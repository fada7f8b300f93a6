"""A forwarder that SIGKILLs itself after a batch is sent and before it is acknowledged.

Run by test_rocketmq_pipeline as a separate process: the crash leaves the
stream entries pending in the forwarder group although RocketMQ has them.
"""

from __future__ import annotations

import asyncio
import os
import signal

import redis.asyncio as redis
from opentelemetry.trace import NoOpTracer

from mesh.bus import BatchOutcome, Message
from mesh.bus.dead_letters import KeptOnStream
from mesh.bus.redis_streams import ConsumerConfig, StreamConsumer
from mesh.bus.rocketmq import Forwarder, RocketClient
from mesh.bus.topology import topic_for


async def main() -> None:
    stream = os.environ["STREAM"]
    rocket = RocketClient(os.environ["ROCKETMQ_ENDPOINT"])
    producer = await rocket.producer([topic_for(stream)])
    forwarder = Forwarder(rocket, producer, topic_for(stream))

    async def send_then_die(batch: list[Message]) -> BatchOutcome:
        outcome = await forwarder(batch)
        print(f"sent {len(batch) - len(outcome.failed)}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # before the stream consumer acknowledges
        return outcome

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    consumer = StreamConsumer(
        client, stream, "forwarder", send_then_die, KeptOnStream(), tracer=NoOpTracer(),
        config=ConsumerConfig(batch_size=500), consumer="doomed",
    )  # fmt: skip
    await consumer.run_until_idle()


if __name__ == "__main__":
    asyncio.run(main())
