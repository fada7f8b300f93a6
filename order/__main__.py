"""python -m order [serve | dead-letters | replay [ID ...] | trace ORDER_ID]"""

from __future__ import annotations

import asyncio
import sys

from opentelemetry.trace import NoOpTracer

from mesh.bus.dead_letters import replay
from mesh.bus.topology import topic_for
from mesh.bus.transport import EventTransport, rocket_client
from mesh.clock import utc_now
from mesh.process import run_service, settings_or_exit
from order.bootstrap import bootstrap, build_components
from order.settings import OrderSettings


async def _dead_letters(settings: OrderSettings) -> None:
    parts = await build_components(settings, NoOpTracer())
    try:
        for letter in await parts.dead_letters().pending():
            print(f"{letter.id}\t{letter.stream}\t{letter.type}\t{letter.order_id}\t{letter.attempts}\t{letter.reason}")
    finally:
        await parts.close()


async def _replay(settings: OrderSettings, ids: set[int] | None) -> None:
    parts = await build_components(settings, NoOpTracer())
    transport = EventTransport(
        settings, parts.client, parts.dead_letters(), NoOpTracer(), rocket=rocket_client(settings)
    )
    topics = sorted({topic_for(stream) for stream, _ in settings.subscriptions()})
    try:
        republisher = await transport.republisher(parts.publisher, topics)
        count = await replay(parts.dead_letters(), republisher, utc_now(), ids)
    finally:
        await transport.close()
        await parts.close()
    print(f"replayed {count} dead letters")


def main() -> None:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("serve", [])
    if command == "serve":
        run_service("order", OrderSettings, bootstrap)
    elif command == "dead-letters":
        asyncio.run(_dead_letters(settings_or_exit("order", OrderSettings)))
    elif command == "trace":
        from order.trace import main as trace

        raise SystemExit(trace(args))
    elif command == "replay" and all(a.isdigit() for a in args):
        asyncio.run(_replay(settings_or_exit("order", OrderSettings), {int(a) for a in args} or None))
    else:
        print("usage: python -m order [serve | dead-letters | replay [ID ...] | trace ORDER_ID]", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
