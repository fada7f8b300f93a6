"""Names on the RocketMQ side, derived from the stream and group names.

A Redis stream ``events:order-placed`` is forwarded to the topic
``ordermesh-order-placed`` (RocketMQ names allow no ``:``); a consumer group
``order`` becomes ``ordermesh-order``. RocketMQ moves a message that
exhausted its group's deliveries to ``%DLQ%<group>``, which a dead-letter
consumer group reads into the ``dead_letters`` table.

The launcher that creates topics and groups (the launcher, a Helm hook)
and the processes that use them derive the names here, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PREFIX = "ordermesh-"
# The order context's dead-letter intake group; every consuming context has its
# own (ConsumerServiceSettings.dead_letter_group): RocketMQ expects every
# consumer of a group to subscribe to the same topics, and each context's
# intake reads its own groups' DLQs.
DEAD_LETTER_GROUP = PREFIX + "dead-letters"


def topic_for(stream: str) -> str:
    return PREFIX + stream.rsplit(":", 1)[-1]


def group_for(group: str) -> str:
    return PREFIX + group


def dlq_topic(rocket_group: str) -> str:
    return f"%DLQ%{rocket_group}"


@dataclass(frozen=True)
class Topology:
    """What a broker must hold for a set of (stream, group) subscriptions."""

    topics: dict[str, str]  # name -> message type
    groups: dict[str, int]  # name -> retry maximum

    @classmethod
    def of(
        cls, subscriptions: Iterable[tuple[str, str]], max_attempts: int, dead_letter_group: str = "dead-letters"
    ) -> Topology:
        """One context's subscriptions, its groups' DLQs and its dead-letter intake group."""
        # RocketMQ delivers a message 1 + retryMaxTimes times before the DLQ.
        retries = max(0, max_attempts - 1)
        topics: dict[str, str] = {}
        groups: dict[str, int] = {}
        for stream, group in subscriptions:
            topics[topic_for(stream)] = "NORMAL"
            groups[group_for(group)] = retries
        for group in list(groups):
            # Created up front: the broker would create it on the first dead
            # letter, write-only, and a consumer could not subscribe before that.
            topics[dlq_topic(group)] = "NORMAL"
        # A dead letter keeps the delivery count it ran out with, and the proxy
        # sends a message whose count is past its group's maximum straight on to
        # that group's DLQ: the intake group must allow more than the others did.
        groups[group_for(dead_letter_group)] = 2 * retries + 16
        return cls(topics, groups)

    def __or__(self, other: Topology) -> Topology:
        """Both contexts' topics and groups (a topic two contexts read is one topic)."""
        return Topology({**self.topics, **other.topics}, {**self.groups, **other.groups})
