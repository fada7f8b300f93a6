"""python -m catalog [serve | flusher | audit | reclaim [--yes] [PRODUCT=UNITS ...]]"""

from __future__ import annotations

import asyncio
import sys

from catalog.audit import audit, render
from catalog.bootstrap import bootstrap, bootstrap_flusher, build_components
from catalog.settings import CatalogSettings
from mesh.process import run_service, settings_or_exit

USAGE = "usage: python -m catalog [serve | flusher | audit | reclaim [--yes] [PRODUCT=UNITS ...]]"


async def _audit(settings: CatalogSettings) -> int:
    parts = await build_components(settings)
    try:
        result = await audit(parts.redis_stock, parts.ledger, parts.sql_path)
    finally:
        await parts.close()
    print(render(result))
    return 0 if result.clean else 1


async def _reclaim(settings: CatalogSettings, args: list[str]) -> int:
    """Return units stranded in a lost Redis to sellable stock, after a person says so.

    Some of them may have been sold just before Redis lost its data (an order
    answered whose deduction never reached SQL): the operator returns only what
    they are sure of, per product (PRODUCT=UNITS), or everything (--yes alone).
    """
    confirmed = "--yes" in args
    try:
        only = {pid: int(units) for pid, _, units in (a.partition("=") for a in args if a != "--yes")} or None
    except ValueError:
        print(USAGE, file=sys.stderr)
        return 2
    parts = await build_components(settings)
    try:
        stranded = {pid: level.stranded for pid, level in (await parts.ledger.levels()).items() if level.stranded}
        if not stranded:
            print("nothing is stranded")
            return 0
        for pid, units in stranded.items():
            print(f"{pid:<20} {units:>8} stranded")
        if not confirmed:
            print("run again with --yes to return them (or PRODUCT=UNITS ... --yes for part of them)")
            return 1
        moved = await parts.ledger.reclaim(only)
    finally:
        await parts.close()
    for pid, units in moved.items():
        print(f"{pid:<20} {units:>8} returned to sellable stock")
    return 0


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command == "serve":
        run_service("catalog", CatalogSettings, bootstrap)
    elif command == "flusher":
        run_service("catalog-flusher", CatalogSettings, bootstrap_flusher)
    elif command == "audit":
        raise SystemExit(asyncio.run(_audit(settings_or_exit("catalog", CatalogSettings))))
    elif command == "reclaim":
        raise SystemExit(asyncio.run(_reclaim(settings_or_exit("catalog", CatalogSettings), sys.argv[2:])))
    else:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
