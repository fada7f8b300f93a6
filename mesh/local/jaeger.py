"""A local Jaeger (v2, all-in-one, traces in memory) for ``make run TRACING=1``
and the tracing tests: OTLP in on ``otlp_port`` (gRPC), the query API (and
UI) on ``query_port``. Built by ``scripts/setup/go-tools.sh jaeger`` into
``.tools/bin``.

The UI's web assets are not part of Jaeger's Go module (upstream builds them
from a JavaScript repository no registry here serves), so the page on the
query port is a placeholder; the HTTP query API works, and
``python -m order trace ORDER_ID`` prints an order's trace from it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mesh.local.procs import ManagedProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".tools" / "bin" / "jaeger"

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn

extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: {max_traces}
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: {host}:{query_port}
    grpc:
      endpoint: {host}:{query_grpc_port}
  healthcheckv2:
    use_v2: true
    http:
      endpoint: {host}:{health_port}

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{otlp_port}
      http:
        endpoint: {host}:{otlp_http_port}

processors:
  batch:
    timeout: 200ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
"""


class JaegerServer:
    def __init__(
        self,
        workdir: Path,
        *,
        otlp_port: int | None = None,
        query_port: int | None = None,
        host: str = "127.0.0.1",
        max_traces: int = 100_000,
        die_with_parent: bool = False,
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.otlp_port = otlp_port or free_port()
        self.query_port = query_port or free_port()
        self.max_traces = max_traces
        self.die_with_parent = die_with_parent
        self.process: ManagedProcess | None = None

    @property
    def otlp_endpoint(self) -> str:
        """For OTEL_EXPORTER_OTLP_ENDPOINT (gRPC)."""
        return f"http://{self.host}:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        return f"http://{self.host}:{self.query_port}"

    def start(self, timeout: float = 30.0) -> JaegerServer:
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} not built: run scripts/setup/go-tools.sh jaeger (make setup)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "jaeger.yaml"
        config.write_text(
            CONFIG.format(
                host=self.host,
                otlp_port=self.otlp_port,
                otlp_http_port=free_port(),
                query_port=self.query_port,
                query_grpc_port=free_port(),
                health_port=free_port(),
                max_traces=self.max_traces,
            )
        )
        self.process = ManagedProcess(
            "jaeger",
            [str(BINARY), "--config", str(config)],
            self.workdir / "jaeger.log",
            # Jaeger traces its own query service to the default OTLP endpoint
            # (this one, or nothing): off.
            {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"},
            die_with_parent=self.die_with_parent,
        )
        self.process.start()
        wait_until(lambda: self._answers() or not (self.process and self.process.alive), timeout, "jaeger's query API")
        if not (self.process and self.process.alive):
            raise RuntimeError(f"jaeger failed to start:\n{self.process.tail() if self.process else ''}")
        return self

    def _answers(self) -> bool:
        try:
            get_json(f"{self.query_url}/api/services", timeout=1)
        except (OSError, ValueError):
            return False
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)


def get_json(url: str, timeout: float = 10) -> Any:
    """GET a Jaeger query API URL; its answers are ``{"data": ...}`` (a trace it
    does not hold is a 404: no data)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return {"data": None}
        raise
