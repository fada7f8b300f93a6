"""Write-behind: the stock journal stream into products.stock, in batches.

Acknowledgement policy: an entry is acknowledged (XACK) and trimmed (XDEL)
only after the SQL transaction that applied it committed. A transient failure
(SQL or Redis down) acknowledges nothing and backs off; the entries stay in
this consumer's pending list and are read again first. A malformed entry can
never succeed: it goes to the dead-letter stream and the ``dead_letters``
table, then is acknowledged so the rest keeps flowing. Entries left pending by
a consumer that died are claimed with XAUTOCLAIM after ``claim_idle``.
Redelivery is harmless: ``journal_applied`` (same transaction) skips repeats.

Each batch is applied with the epoch of the Redis it was read from (read
before and after the batch; a batch read across an epoch change waits for
the next round), so SQL can tell a late batch of a lost Redis from the
current one's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import SQLAlchemyError

from catalog.journal import JournalEntry, MalformedEntry, parse
from catalog.keys import Keys
from catalog.ledger import Ledger
from catalog.metrics import FlusherMetrics
from catalog.models import dead_letters
from mesh.bus.dead_letters import DeadLetter, SqlDeadLetters
from mesh.bus.redis_streams import ensure_group
from mesh.clock import Clock
from mesh.worker import LoopWorker

log = logging.getLogger(__name__)
GROUP = "flusher"


@dataclass(frozen=True)
class FlusherConfig:
    batch_size: int = 200
    block_ms: int = 100
    # After a short batch, wait this long before reading again so the next
    # batch fills up: one SQL transaction per 200 entries, not per entry.
    linger_ms: int = 50
    claim_idle_ms: int = 30_000
    claim_every_seconds: float = 5.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0


class JournalFlusher(LoopWorker):
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        ledger: Ledger,
        *,
        clock: Clock,
        config: FlusherConfig = FlusherConfig(),
        consumer: str | None = None,
        metrics: FlusherMetrics | None = None,
    ) -> None:
        super().__init__("journal-flusher")
        self._client = client
        self._keys = keys
        self._ledger = ledger
        self._dead_letters = SqlDeadLetters(ledger.engine, dead_letters)
        self._clock = clock
        self._config = config
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._read_own_pending = True
        self._metrics = metrics

    async def run_until_idle(self) -> int:
        """Flush until nothing is pending or new (tests and the auditor)."""
        await self._ensure_group()
        total = 0
        while True:
            reading_pending = self._read_own_pending
            count = await self.flush_once(block_ms=None)
            total += count
            if count == 0 and not reading_pending:
                return total

    async def _ensure_group(self) -> None:
        await ensure_group(self._client, self._keys.journal, GROUP)

    async def run(self) -> None:
        backoff = self._config.backoff_initial
        loop = asyncio.get_running_loop()
        next_claim = 0.0
        group_ready = False
        while self.running:
            try:
                if not group_ready:
                    await self._ensure_group()
                    group_ready = True
                if loop.time() >= next_claim:
                    await self.claim_stale()
                    next_claim = loop.time() + self._config.claim_every_seconds
                handled = await self.flush_once(block_ms=self._config.block_ms)
                backoff = self._config.backoff_initial
                if 0 < handled < self._config.batch_size:
                    await asyncio.sleep(self._config.linger_ms / 1000)
            except (RedisError, SQLAlchemyError, OSError) as error:
                if isinstance(error, ResponseError) and str(error).startswith("NOGROUP"):
                    group_ready = False  # the journal went (a Redis restarted empty, a new epoch)
                log.warning("flusher: %s; retrying in %.1fs", error, backoff)
                self._read_own_pending = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._config.backoff_max)
            except Exception:
                log.exception("flusher: unexpected error; retrying")
                self._read_own_pending = True
                await asyncio.sleep(self._config.backoff_max)

    async def claim_stale(self) -> int:
        """Take over entries another consumer read but never acknowledged."""
        reply = await self._client.xautoclaim(
            self._keys.journal, GROUP, self.consumer, self._config.claim_idle_ms, "0-0", count=self._config.batch_size
        )
        claimed = len(reply[1]) if reply else 0
        if claimed:
            log.info("flusher: claimed %d stale journal entries", claimed)
            self._read_own_pending = True
        return claimed

    async def flush_once(self, block_ms: int | None) -> int:
        """Read one batch, apply it, acknowledge it; returns entries handled."""
        start_id = "0" if self._read_own_pending else ">"
        epoch = await self._client.get(self._keys.epoch)
        reply = await self._client.xreadgroup(
            GROUP,
            self.consumer,
            {self._keys.journal: start_id},
            count=self._config.batch_size,
            block=None if start_id == "0" else block_ms,
        )
        delivered: list[tuple[bytes, dict[bytes, bytes] | None]] = cast(Any, reply)[0][1] if reply else []
        if not delivered:
            if start_id == "0":
                self._read_own_pending = False
            return 0
        # A pending entry already trimmed (applied, then this consumer died
        # before XACK reached Redis) comes back without fields: just ack it.
        raw = [(entry_id, fields) for entry_id, fields in delivered if fields]
        if len(raw) < len(delivered):
            await self._acknowledge([entry_id for entry_id, fields in delivered if not fields])
        if not raw:
            return len(delivered)
        if epoch is None or epoch != await self._client.get(self._keys.epoch):
            log.warning("flusher: the Redis epoch changed under a batch; reading again")
            self._read_own_pending = True
            await asyncio.sleep(self._config.block_ms / 1000)  # not a busy loop while it settles
            return 0
        entries: list[JournalEntry] = []
        for entry_id, fields in raw:
            try:
                entries.append(parse(entry_id.decode(), fields))
            except MalformedEntry as error:
                await self._dead_letter(entry_id.decode(), fields, str(error))
        if entries:
            applied = await self._ledger.apply_journal(entries, _text(epoch), self._clock())
            if self._metrics is not None:
                self._metrics.applied.inc(applied)
                # Stream ids start with the append time in milliseconds.
                oldest_ms = int(entries[0].entry_id.split("-", 1)[0])
                self._metrics.lag.set(max(0.0, self._clock().timestamp() - oldest_ms / 1000))
        await self._acknowledge([entry_id for entry_id, _ in raw])
        return len(raw)

    async def _dead_letter(self, entry_id: str, fields: dict[bytes, bytes], reason: str) -> None:
        payload = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        dead: dict[Any, Any] = {**payload, "dead_entry_id": entry_id, "dead_reason": reason}
        await self._client.xadd(self._keys.dead_letters, dead)
        letter = DeadLetter(
            0,
            self._keys.journal,
            entry_id,
            "StockChanged",
            payload.get("order_id", ""),
            reason,
            1,
            repr(payload).encode(),
        )
        await self._dead_letters.store(letter, self._clock())
        if self._metrics is not None:
            self._metrics.dead_lettered.inc()
        log.error("flusher: dead-lettered %s: %s", entry_id, reason)

    async def _acknowledge(self, entry_ids: list[bytes]) -> None:
        # Trimming by XDEL of exactly what this group acknowledged: nothing
        # another reader has not seen can be lost (the journal has one group).
        pipe = self._client.pipeline(transaction=True)
        pipe.xack(self._keys.journal, GROUP, *entry_ids)
        pipe.xdel(self._keys.journal, *entry_ids)
        await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
