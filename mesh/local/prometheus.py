"""A local Prometheus (Debian's package) for ``make run MONITORING=1``: it
scrapes the mesh with ``monitoring/prometheus.yml`` and evaluates its alert
rules; data under the mesh's var directory."""

from __future__ import annotations

import re
from pathlib import Path

from mesh.local.procs import ManagedProcess, port_open, require_binary, wait_until

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "monitoring" / "prometheus.yml"


class PrometheusServer:
    def __init__(self, workdir: Path, *, port: int = 9090, port_offset: int = 0, die_with_parent: bool = False) -> None:
        self.workdir = workdir
        self.port = port
        self.port_offset = port_offset
        self.die_with_parent = die_with_parent
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        binary = require_binary("prometheus", "apt-get install prometheus (make debs-test)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(self._config())
        # The rule files sit next to the configuration, relative to it.
        for rules in CONFIG.parent.glob("alerts*.yml"):
            if not rules.name.endswith("_test.yml"):
                (self.workdir / rules.name).write_text(rules.read_text())
        self.process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=2d",
            ],
            self.workdir / "prometheus.log",
            die_with_parent=self.die_with_parent,
        )
        self.process.start()
        wait_until(lambda: port_open(self.port) or not (self.process and self.process.alive), timeout, "prometheus")
        if not (self.process and self.process.alive):
            raise RuntimeError(f"prometheus failed to start:\n{self.process.tail() if self.process else ''}")
        return self

    def _config(self) -> str:
        """monitoring/prometheus.yml, its loopback targets shifted like the mesh's ports."""
        text = CONFIG.read_text()
        if not self.port_offset:
            return text
        return re.sub(r"(127\.0\.0\.1|localhost):(\d+)", lambda m: f"{m[1]}:{int(m[2]) + self.port_offset}", text)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)
