"""What the local broker is configured with: names, topic and group entries,
the JVM entry points, and the checks they pass before the broker starts."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CLUSTER = "DefaultCluster"
BROKER_NAME = "broker-a"
HOST = "127.0.0.1"
QUEUES = 4  # read = write queues per topic: enough for a few concurrent consumers, small on disk
MESSAGE_TYPES = ("NORMAL", "FIFO", "DELAY", "TRANSACTION")
DEFAULT_RETRY_MAX = 16  # the broker's own default for a subscription group
# The broker rejects writes once the store's filesystem is 90% used (raised to 98 below); refuse
# to start well before, because a broker that starts and then drops every send is worse.
MAX_DISK_USED = 0.85

# Names the broker accepts (it also allows '%' and '|', which it reserves for retry/namespace topics).
NAME = re.compile(r"^(%DLQ%)?[A-Za-z0-9_-]{1,127}$")

NAMESRV_MAIN = "org.apache.rocketmq.namesrv.NamesrvStartup"
PROXY_MAIN = "org.apache.rocketmq.proxy.ProxyStartup"
ADMIN_MAIN = "org.apache.rocketmq.tools.command.MQAdminStartup"


def disk_used_ratio(path: Path) -> float:
    """Used fraction of the filesystem holding ``path``, counted as the broker counts it.

    UtilAll.getDiskPartitionSpaceUsedPercent: used = total - free, over used + usable (what
    ``df`` shows as Use%), so blocks reserved for root count as neither.
    """
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    st = os.statvfs(probe)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    usable = st.f_bavail * st.f_frsize
    return used / (used + usable) if used + usable else 1.0


def check_name(kind: str, name: str) -> None:
    if not NAME.match(name):
        raise ValueError(
            f"invalid RocketMQ {kind} name {name!r} (letters, digits, '_' and '-', at most 127, maybe after %DLQ%)"
        )


def check_topics(topics: Mapping[str, str]) -> None:
    for name, message_type in topics.items():
        check_name("topic", name)
        if message_type not in MESSAGE_TYPES:
            raise ValueError(f"topic {name}: message type {message_type!r} is not one of {', '.join(MESSAGE_TYPES)}")


def check_groups(groups: Mapping[str, int]) -> None:
    for name, retry_max in groups.items():
        check_name("group", name)
        if not 0 <= retry_max <= 1000:
            raise ValueError(f"group {name}: retry max {retry_max} is out of range")


def topic_config(name: str, message_type: str) -> dict[str, Any]:
    return {
        "topicName": name,
        "readQueueNums": QUEUES,
        "writeQueueNums": QUEUES,
        "perm": 6,  # read + write
        "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": 0,
        "order": False,
        # The proxy checks each send against this (enableTopicMessageTypeCheck).
        "attributes": {"message.type": message_type},
    }


def group_config(name: str, retry_max: int) -> dict[str, Any]:
    return {
        "groupName": name,
        "consumeEnable": True,
        "consumeBroadcastEnable": False,
        "retryMaxTimes": retry_max,  # the proxy hands clients retryMaxTimes + 1 as their max attempts
        "retryQueueNums": 1,
        "brokerId": 0,
        "whichBrokerWhenConsumeSlowly": 1,
        "notifyConsumerIdsChangedEnable": True,
    }


def merge_table(path: Path, table: str, entries: Mapping[str, dict[str, Any]]) -> None:
    """Add missing entries to a broker config file (only ever called while the broker is down).

    On the first start the file does not exist yet and the broker merges its system topics
    and groups in; on a later start it holds the broker's own state, which is kept as is.
    """
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    current = data.setdefault(table, {})
    missing = {name: entry for name, entry in entries.items() if name not in current}
    if not missing and path.exists():
        return
    current.update(missing)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
