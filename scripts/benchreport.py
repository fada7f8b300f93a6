"""The benchmarks' reports, kept and gathered into docs/performance.md.

Each bench script builds the report it prints at the end as one string and
calls ``save(name, title, text)``: it lands in var/reports/bench/<name>.json
with when and where it ran. ``python scripts/benchreport.py`` (the last step
of ``make bench``) writes docs/performance.md from the saved reports, in a
fixed order, with the machine they ran on.

The scripts import it as a plain module: ``python scripts/bench_x.py`` puts
scripts/ first on sys.path.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "var/reports/bench"
DOCUMENT = ROOT / "docs/performance.md"
# The document's sections in this order; the title stands until a report brings its own.
BENCHMARKS = {
    "stock": "Stock reservation: the Redis path against the SQL path",
    "pipeline": "The order pipeline: CPU per order and the sustainable rate",
    "forwarder": "The RocketMQ transport: Redis -> RocketMQ relay and RocketMQ -> SQL",
    "tracing": "What tracing costs ReserveStock",
}
# Imported at a script's start: save() reports how long the whole script ran.
_STARTED = time.monotonic()


# --- the machine ----------------------------------------------------------------------------


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _cpu_model(lines: list[str]) -> str:
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, memory, kernel, Python, and whether it is a VM
    (a virtual CPU shares its physical core with other guests, so figures vary more)."""
    lines = _cpuinfo()
    return {
        "cpu": _cpu_model(lines),
        "cores": os.cpu_count() or 0,
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "virtual": any(line.startswith("flags") and " hypervisor" in line for line in lines),
    }


def describe(host: dict[str, Any]) -> str:
    kind = "a virtual machine (the CPU flags say hypervisor)" if host["virtual"] else "no hypervisor flag"
    return (
        f"{host['cpu']}, {host['cores']} cores, {host['memory_gib']:.0f} GiB memory, "
        f"Linux {host['kernel']}, Python {host['python']}; {kind}"
    )


def _commit() -> str:
    """The commit the figures came from, and whether the tree had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


# --- saving ---------------------------------------------------------------------------------


def save(name: str, title: str, text: str) -> None:
    """Keep one benchmark's printed report for docs/performance.md."""
    record = {
        "name": name,
        "title": title,
        "text": text.strip("\n"),
        "ran_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - _STARTED),
        "commit": _commit(),
        "machine": machine(),
    }
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(
        f"\n(saved to {path.relative_to(ROOT)}; python scripts/benchreport.py puts it in docs/performance.md)",
        file=sys.stderr,
    )


def load(name: str) -> dict[str, Any] | None:
    path = REPORTS / f"{name}.json"
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record


# --- the document ---------------------------------------------------------------------------


def header(host: dict[str, Any]) -> list[str]:
    return [
        "# Performance",
        "",
        "What the benchmarks under `scripts/` measured the last time they ran: each",
        "section is the report its benchmark printed, unedited. This file is generated",
        "by `scripts/benchreport.py` from the reports the benchmarks saved under",
        "`var/reports/bench/`; do not edit it by hand. To regenerate it, run `make bench`",
        "(every benchmark, then this file), or one benchmark (`make bench-pipeline`, say)",
        "and then `.venv/bin/python scripts/benchreport.py`.",
        "",
        "Every process of a benchmark (the mesh, Redis, MariaDB, the RocketMQ JVMs and",
        "the load generator) runs on the one machine below, so the figures are what",
        "these cores allow together, not what one service would do on a machine of its",
        "own. On a virtual machine shared with other work they vary from run to run:",
        "compare the figures within one report (each measures its cases side by side).",
        "Where the CPU goes, what changed it and what is left: [cost.md](cost.md).",
        "",
        "## The machine",
        "",
        f"{describe(host)}. Assembled {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
    ]


def section(name: str, record: dict[str, Any] | None, host: dict[str, Any]) -> list[str]:
    target = f"make bench-{name}"
    if record is None:
        return [f"## {BENCHMARKS[name]}", "", f"No report saved yet: run `{target}`."]
    ran = datetime.fromisoformat(record["ran_at"])
    where = "" if record.get("machine") == host else f" on another machine: {describe(record['machine'])}"
    return [
        f"## {record.get('title') or BENCHMARKS[name]}",
        "",
        f"`{target}`, finished {ran:%Y-%m-%d %H:%M} UTC after {record.get('seconds', 0) / 60:.1f} min,"
        f" at commit {record.get('commit', 'unknown')}{where}.",
        "",
        "```text",
        record["text"],
        "```",
    ]


def document() -> str:
    host = machine()
    parts = [header(host)] + [section(name, load(name), host) for name in BENCHMARKS]
    return "\n\n".join("\n".join(part) for part in parts) + "\n"


def main() -> None:
    DOCUMENT.write_text(document())
    missing = [name for name in BENCHMARKS if load(name) is None]
    note = f"; no report yet from: {', '.join(missing)}" if missing else ""
    print(f"wrote {DOCUMENT.relative_to(ROOT)}{note}")


if __name__ == "__main__":
    main()
