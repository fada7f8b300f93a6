"""python -m gateway: the JSON/SSE HTTP gateway and the web console."""

from __future__ import annotations

import asyncio
import sys

import uvloop
from opentelemetry import trace

from gateway.bootstrap import bootstrap
from gateway.server import serve
from gateway.settings import GatewaySettings
from mesh.errors import StartupError
from mesh.logs import configure_logging
from mesh.process import settings_or_exit


def main() -> None:
    settings = settings_or_exit("gateway", GatewaySettings)
    configure_logging("ordermesh-gateway", settings.log_level, settings.log_format)

    async def run() -> None:
        app = await bootstrap(settings)
        # Installed globally so library instrumentation and log records see it.
        trace.set_tracer_provider(app.tracer_provider)
        await serve(app)

    uvloop.install()
    try:
        asyncio.run(run())
    except StartupError as error:
        print(f"ordermesh-gateway: cannot start: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
