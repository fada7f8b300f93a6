"""python -m order [serve | dead-letters | replay [ID ...] | trace ORDER_ID]"""

from __future__ import annotations

import asyncio
import sys

from opentelemetry.trace import NoOpTracer

from mesh.bus.replay import print_dead_letters, replay_dead_letters
from mesh.process import run_service, settings_or_exit
from order.bootstrap import bootstrap, build_components
from order.settings import OrderSettings


def main() -> None:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("serve", [])
    if command == "serve":
        run_service("order", OrderSettings, bootstrap)
    elif command == "dead-letters":
        settings = settings_or_exit("order", OrderSettings)
        asyncio.run(print_dead_letters(build_components(settings, NoOpTracer())))
    elif command == "trace":
        from order.trace import main as trace

        raise SystemExit(trace(args))
    elif command == "replay" and all(a.isdigit() for a in args):
        settings = settings_or_exit("order", OrderSettings)
        ids = {int(a) for a in args} or None
        asyncio.run(
            replay_dead_letters(build_components(settings, NoOpTracer()), settings, settings.subscriptions(), ids)
        )
    else:
        print("usage: python -m order [serve | dead-letters | replay [ID ...] | trace ORDER_ID]", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
