"""Several worker processes on one gRPC port (``WORKERS=N``).

A Python process uses one core; a pod or a machine has more. With WORKERS
above 1 the command becomes a small supervisor: it starts N copies of itself
(``WORKER_INDEX`` 0..N-1), each binding the same port with SO_REUSEPORT so the
kernel spreads incoming connections over them, and each serving its own
/metrics on METRICS_PORT + index. The supervisor passes SIGTERM and SIGINT on
(each worker drains as a single process does) and exits when they have; if a
worker dies on its own, it stops the others and exits non-zero, so the pod or
the launcher sees the failure instead of a mesh running on fewer workers.

Correct with several workers by construction: periodic jobs run under a Redis
lease (one worker at a time), stream consumers join one group with a consumer
name per process, RocketMQ consumers share a group, the idempotency claims and
the stock scripts are in Redis and SQL, not in a process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

WORKER_ENV = "WORKER_INDEX"


def is_worker() -> bool:
    return WORKER_ENV in os.environ


def supervise(workers: int) -> int:
    """Run ``workers`` copies of this command; return the exit code for the supervisor."""
    argv = [sys.executable, *sys.orig_argv[1:]]
    children = [
        subprocess.Popen(argv, env={**os.environ, WORKER_ENV: str(index), "WORKERS": str(workers)})
        for index in range(workers)
    ]
    stopping = died = False

    def forward(sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while any(child.poll() is None for child in children):
        if not stopping and any(child.poll() is not None for child in children):
            # A worker died on its own: stop the rest, report the failure.
            print("ordermesh: a worker exited on its own; stopping the others", file=sys.stderr)
            died = True
            forward(signal.SIGTERM, None)
        time.sleep(0.1)
    if died or any(child.returncode != 0 for child in children):
        return 1
    return 0
