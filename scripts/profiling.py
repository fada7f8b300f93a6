"""py-spy around a benchmark: record processes while they work, print where the CPU went.

Used by ``make bench-stock`` (``BENCH_PROFILE=1``) and ``make profile``. py-spy
samples a running process from outside (no code change, no restart); its raw
output is one line per distinct stack with a sample count, kept under
var/reports/ for flame graph tools.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = str(Path(sys.executable).parent / "py-spy")
_LINE = re.compile(r":\d+\)$")


def start(pid: int, output: Path, *, rate: int = 250) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` and its children (WORKERS=N) until ``stop``.

    Only samples of a thread holding the GIL are kept (``--gil``): in this VM
    py-spy cannot tell a thread blocked in C (the event loop's epoll_wait,
    aiosqlite's queue, grpc's poller) from a running one, and without the flag
    idle threads fill half the samples. The price: C code that releases the
    GIL while it works (SQLite statements, socket I/O) is not counted.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [PY_SPY, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--gil",
         "--rate", str(rate), "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    spy.wait(30)


def summary(path: Path, title: str, *, top: int = 25) -> str:
    """The functions with the most samples with what they call ("total") and in
    themselves ("self"), lines merged. Time in C (grpc core, uvloop, protobuf)
    counts to the Python function that called it; the event loop's own C work
    (uvloop, grpc's aio server) shows as ``Runner.run``."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [_LINE.sub(")", f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        count = int(count_text)
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return f"{title}: no samples"
    lines = [f"{title}: {samples} samples; stacks in {path}", f"{'total':>6} {'self':>6}  function (file)"]
    # Frames every sample passes through (the entry point, the loop) say nothing: skipped.
    ranked = [(f, n) for f, n in total.most_common() if n < samples * 0.97 or own[f] > samples * 0.05]
    for frame, count in ranked[:top]:
        lines.append(f"{count / samples:>6.1%} {own[frame] / samples:>6.1%}  {frame}")
    return "\n".join(lines)


def process_table() -> dict[int, tuple[int, float]]:
    """Every process's parent and CPU seconds so far (user + system, Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return table


def tree_cpu_seconds(pid: int, table: dict[int, tuple[int, float]] | None = None) -> float:
    """CPU seconds so far of a process and its descendants alive now (WORKERS=N forks workers)."""
    table = table if table is not None else process_table()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += table.get(current, (0, 0.0))[1]
        todo.extend(children.get(current, []))
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
