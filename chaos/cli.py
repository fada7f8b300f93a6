"""``python -m chaos [SCENARIO ...]``: run scenarios one after another and print the table.

Exits non-zero when a scenario's auditor was not clean, or an acknowledged
order was lost. Bounded: each scenario runs ``--seconds`` of load (30) and
stops by itself; loopback only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from chaos.run import Row, run
from chaos.scenarios import SCENARIOS


def table(rows: list[Row]) -> str:
    lines = [
        f"{'scenario':<20} {'fault':<38} {'attempted':>9} {'answered':>8} {'failed':>6} {'retried':>7} "
        f"{'lost/dup':>8} {'oversold':>8} {'money kept':>10} {'recover s':>9}  auditor",
    ]
    for row in rows:
        lines.append(
            f"{row.scenario:<20} {row.fault:<38} {row.attempted:>9} {row.answered:>8} {row.failed:>6} "
            f"{row.retried:>7} {row.lost_or_duplicated:>8} {row.oversold:>8} {row.money_kept:>10} "
            f"{row.recovered_s:>9.1f}  {row.verdict}"
        )
    lines += [
        "answered: orders PlaceOrder acknowledged (the load retries UNAVAILABLE with the same request_id: retried);",
        "lost/dup, oversold, money kept: the global auditor's violations of 'every acknowledged order stored once',",
        "'stock books agree' and 'every capture belongs to a live order'; its verdict covers every other invariant",
    ]
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=list(SCENARIOS))
    parser.add_argument("--rate", type=float, default=20.0, help="orders started per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the load runs")
    args = parser.parse_args(argv)
    rows = []
    for name in args.scenarios or list(SCENARIOS):
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
            print(f"  {name}: running", file=sys.stderr, flush=True)
            row = await run(SCENARIOS[name], Path(tmp), rate=args.rate, seconds=args.seconds)
            rows.append(row)
            if not row.clean:
                print(row.report, file=sys.stderr)
    print(table(rows))
    if not all(row.clean for row in rows):
        raise SystemExit(1)
