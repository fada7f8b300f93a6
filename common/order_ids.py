"""Order ids that carry their shard: ``o<shard>-<time><random>``.

Shared by checkout (which mints them) and order (which routes by them), so
GetOrder finds the right database from the id alone. The shard is a stable
hash of the user id, so one user's orders live together (ListOrders reads
one shard).
"""

from __future__ import annotations

import re
import secrets
import time
import zlib

MINTED = re.compile(r"^o(\d{1,3})-[0-9a-f]{8,40}$")


def shard_of_user(user_id: str, shards: int) -> int:
    return zlib.crc32(user_id.encode()) % shards


def mint(user_id: str, shards: int) -> str:
    """Time-ordered (ids sort roughly by creation) and unguessable."""
    return f"o{shard_of_user(user_id, shards)}-{int(time.time() * 1000):011x}{secrets.token_hex(6)}"


def shard_of_order(order_id: str, shards: int) -> int | None:
    match = MINTED.match(order_id)
    if match is None:
        return None
    shard = int(match.group(1))
    return shard if shard < shards else None
