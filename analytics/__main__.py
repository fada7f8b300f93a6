"""python -m analytics [serve | dead-letters | replay [ID ...] | backfill]"""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from analytics.backfill import backfill
from analytics.bootstrap import bootstrap, build_components, order_shards
from analytics.settings import AnalyticsSettings
from analytics.shards import SqlOrderShard
from mesh.bus.replay import print_dead_letters, replay_dead_letters
from mesh.clock import utc_now
from mesh.process import run_service, settings_or_exit

USAGE = "usage: python -m analytics [serve | dead-letters | replay [ID ...] | backfill]"


async def _backfill(settings: AnalyticsSettings) -> None:
    parts = await build_components(settings)
    shards: list[SqlOrderShard] = []
    try:
        shards = order_shards(settings)
        done = await backfill(shards, parts.store, utc_now, settings.backfill_page_size)
    except SQLAlchemyError as error:
        # A shard that cannot be read (a malformed URL, no order tables there, a
        # database down): said in one line, without the statement; running it
        # again is always safe.
        reason = error.orig if isinstance(error, DBAPIError) else error
        print(f"ordermesh-analytics: backfill stopped: {reason}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        for shard in shards:
            await shard.close()
        await parts.close()
    for report in done:
        print(f"shard {report.shard}: {report.read} orders read, {report.changed} added or brought up to date")


def main() -> None:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("serve", [])
    if command == "serve":
        run_service("analytics", AnalyticsSettings, bootstrap)
    elif command == "dead-letters":
        asyncio.run(print_dead_letters(build_components(settings_or_exit("analytics", AnalyticsSettings))))
    elif command == "replay" and all(a.isdigit() for a in args):
        settings = settings_or_exit("analytics", AnalyticsSettings)
        ids = {int(a) for a in args} or None
        asyncio.run(replay_dead_letters(build_components(settings), settings, settings.subscriptions(), ids))
    elif command == "backfill" and not args:
        asyncio.run(_backfill(settings_or_exit("analytics", AnalyticsSettings)))
    else:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
