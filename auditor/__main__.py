"""python -m auditor [--acknowledged FILE] [--settle SECONDS]

Reads every context of a quiet mesh (where: ``auditor.settings``), prints one
table of invariants and exits 1 if any is violated (2 if it cannot read).
``--acknowledged`` names a file of order ids a client was answered (one per
line, as a load run saves them): each must be stored exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from auditor.audit import audit, clean, render
from auditor.settings import AuditSettings
from auditor.snapshot import open_sources
from mesh.errors import Unavailable


async def _main(args: argparse.Namespace) -> int:
    settings = AuditSettings()
    acknowledged = None
    if args.acknowledged is not None:
        acknowledged = [line.strip() for line in args.acknowledged.read_text().splitlines() if line.strip()]
    window = timedelta(seconds=settings.order_timeout_seconds + settings.pending_grace_seconds)
    try:
        async with open_sources(settings) as sources:
            checks = await audit(sources, window=window, acknowledged=acknowledged, settle_seconds=args.settle)
    except (SQLAlchemyError, RedisError, Unavailable, OSError) as error:
        print(f"auditor: cannot read the mesh: {error}", file=sys.stderr)
        return 2
    print(render(checks))
    return 0 if clean(checks) else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m auditor", description=__doc__.split("\n\n")[1])
    parser.add_argument("--acknowledged", type=Path, help="a file of acknowledged order ids, one per line")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to look again while something is off")
    raise SystemExit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
