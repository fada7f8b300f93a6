"""``make load SCENARIO=smoke`` (``python -m loadtest SCENARIO``): one k6 scenario
against the mesh, with k6's summary on stdout and its HTML report under
``var/reports/``.

When nothing answers at checkout's address (``CHECKOUT``, default
localhost:50052) and the addresses are the local defaults, the embedded mesh
is started as ``make run`` starts it (``var/embedded``) and stopped after the
run. Every other variable reaches k6 as it is: the scripts read ``RATE``,
``DURATION``, ``VUS`` and the rest (loadtest/README.md), k6 itself ``K6_*``.
The exit status is k6's: non-zero when a threshold failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from grpc_health.v1 import health_pb2

from mesh.probe import health_status

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = sorted(p.stem for p in HERE.glob("*.js"))
DEFAULTS = {"CHECKOUT": "localhost:50052", "CATALOG": "localhost:50051", "ORDER": "localhost:50053"}
# What the scripts log for every PlaceOrder answered OK when LOG_ORDER_IDS is set
# (k6 writes console output as logfmt, `msg="answered o0-…"`, on stderr).
ANSWERED = re.compile(r"answered (o\d+-[0-9a-f]+)")


def k6_binary() -> str:
    for candidate in (os.environ.get("K6"), str(ROOT / ".tools/bin/k6"), shutil.which("k6")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("loadtest: no k6 binary: `make tools-k6` builds .tools/bin/k6 (or set K6)")


def answers(target: str) -> bool:
    return bool(health_status(target, timeout=2.0) == health_pb2.HealthCheckResponse.SERVING)


@contextmanager
def mesh_for(env: Mapping[str, str]) -> Iterator[None]:
    """The mesh at the scripts' addresses: the one answering there, or a local
    embedded one started here (only where the addresses are the defaults: a
    remote or port-forwarded mesh is never replaced by a local one)."""
    checkout = env.get("CHECKOUT") or DEFAULTS["CHECKOUT"]
    if answers(checkout):
        print(f"loadtest: the mesh answers at {checkout}", flush=True)
        yield
        return
    custom = [f"{name}={env[name]}" for name in DEFAULTS if env.get(name) and env[name] != DEFAULTS[name]]
    if custom:
        raise SystemExit(f"loadtest: nothing answers at {checkout} ({', '.join(custom)}); start that mesh first")
    # Imported here: the launcher pulls in the local servers, needed only now.
    from launcher.mesh import PROFILES, REDIS_URLS, LocalMesh

    mesh = LocalMesh(ROOT / "var/embedded", redis_url=REDIS_URLS["embedded"], profile=PROFILES["embedded"])
    print("loadtest: no mesh answers at localhost:50052: starting the embedded one (var/embedded) ...", flush=True)
    try:
        try:
            mesh.start()
        except (RuntimeError, TimeoutError) as error:
            raise SystemExit(f"loadtest: cannot start the mesh: {error}") from None
        print("loadtest: mesh started; it is stopped after the run", flush=True)
        yield
    finally:
        print("loadtest: stopping the mesh ...", flush=True)
        mesh.stop()


def run_k6(
    k6: str,
    scenario: str,
    report: Path,
    summary: Path,
    env: dict[str, str],
    order_ids: Path | None,
    k6_args: list[str],
) -> int:
    env = {
        **env,
        # The HTML report, written when the run ends; port -1: the dashboard serves
        # nothing while it runs (no fixed port taken, parallel runs do not collide).
        "K6_WEB_DASHBOARD": "true",
        "K6_WEB_DASHBOARD_EXPORT": str(report),
        "K6_WEB_DASHBOARD_PORT": "-1",
        # The report's sample period (10 s by default would leave a smoke run two points).
        "K6_WEB_DASHBOARD_PERIOD": env.get("K6_WEB_DASHBOARD_PERIOD", "1s"),
    }
    if order_ids is not None:
        env["LOG_ORDER_IDS"] = "1"
    command = [
        k6, "run",
        "--no-usage-report",  # k6 reports usage to Grafana by default
        "--address", "",  # no REST API server on localhost:6565
        "--summary-export", str(summary),
        *k6_args,
        str(HERE / f"{scenario}.js"),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE if order_ids else None, text=True)

    # k6 stops gracefully on the first SIGINT (Ctrl-C reaches it too, from the
    # terminal) and prints its summary: wait for it instead of dying first.
    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGTERM:
            process.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if order_ids is not None:
            assert process.stderr is not None
            with order_ids.open("w") as ids:
                for line in process.stderr:
                    if found := ANSWERED.search(line):
                        ids.write(found.group(1) + "\n")
                    else:
                        sys.stderr.write(line)
        return process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest", description="Run a k6 scenario (loadtest/*.js) against the mesh."
    )
    parser.add_argument("scenario", nargs="?", default="smoke", choices=SCENARIOS)
    parser.add_argument("--reports", type=Path, default=ROOT / "var/reports", help="default: var/reports")
    parser.add_argument(
        "--order-ids",
        type=Path,
        default=None,
        help="write every order id PlaceOrder answered here, one a line (for `make audit ACKED=FILE`)",
    )
    args, k6_args = parser.parse_known_args(argv)
    k6 = k6_binary()  # before a mesh is started for nothing
    args.reports.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = args.reports / f"{args.scenario}-{stamp}.html"
    summary = args.reports / f"{args.scenario}-{stamp}.json"
    with mesh_for(os.environ):
        code = run_k6(k6, args.scenario, report, summary, dict(os.environ), args.order_ids, k6_args)
    for path, what in ((report, "HTML report"), (summary, "summary (JSON)")):
        if path.exists():
            print(f"loadtest: {what}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if args.order_ids is not None:
        print(f"loadtest: order ids answered: {args.order_ids}")
    print(f"loadtest: k6 exited {code}{' (a threshold failed)' if code == 99 else ''}", flush=True)
    return code
