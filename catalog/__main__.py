"""python -m catalog [serve | flusher | audit]"""

from __future__ import annotations

import asyncio
import signal
import sys

from catalog.audit import audit, render
from catalog.bootstrap import bootstrap, build_flusher, build_parts
from catalog.settings import CatalogSettings
from mesh.logs import configure_logging
from mesh.process import run_service, settings_or_exit


async def _flusher(settings: CatalogSettings) -> None:
    parts = await build_parts(settings)
    flusher = build_flusher(parts, settings)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await flusher.start()
    await stop.wait()
    await flusher.stop()
    await parts.close()


async def _audit(settings: CatalogSettings) -> int:
    parts = await build_parts(settings)
    try:
        rows = await audit(parts.redis_stock, parts.sql_stock)
    finally:
        await parts.close()
    print(render(rows))
    return 0 if all(row.ok for row in rows) else 1


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command == "serve":
        run_service("catalog", CatalogSettings, bootstrap)
    elif command == "flusher":
        settings = settings_or_exit("catalog", CatalogSettings)
        configure_logging("ordermesh-catalog-flusher", settings.log_level, settings.log_format)
        asyncio.run(_flusher(settings))
    elif command == "audit":
        raise SystemExit(asyncio.run(_audit(settings_or_exit("catalog", CatalogSettings))))
    else:
        print("usage: python -m catalog [serve | flusher | audit]", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
