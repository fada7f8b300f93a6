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
        f"{'scenario':<22} {'fault':<38} {'attempted':>9} {'answered':>8} {'failed':>6} {'retried':>7} "
        f"{'persisted':>9} {'lost':>4} {'dup':>3} {'oversold':>8} {'money kept':>10} {'recover s':>9} "
        f"{'quiet s':>7}  auditor",
    ]
    for row in rows:
        books = row.books
        lines.append(
            f"{row.scenario:<22} {row.fault:<38} {row.attempted:>9} {row.answered:>8} {row.failed:>6} "
            f"{row.retried:>7} {books.persisted:>9} {books.lost:>4} {books.duplicated:>3} {row.oversold:>8} "
            f"{row.money_kept:>10} {row.recovered_s:>9.1f} {books.quiet_s:>7.1f}  "
            + (row.verdict if not books.owed else f"{row.verdict}; still owed: {books.owed}")
        )
    lines += [
        "attempted, answered, failed, retried: PlaceOrder calls of every load (retried: called again with the same",
        "request_id after UNAVAILABLE or DEADLINE_EXCEEDED; failed: no answer but OK or short of stock after 8 tries);",
        "persisted: orders stored; lost: acknowledged and not stored; dup: a request_id stored twice; oversold and",
        "money kept: the global auditor's violations of 'stock books agree' and 'every capture belongs to a live",
        "order'; recover s: from the fault until every process is SERVING and a PlaceOrder succeeds; quiet s: from",
        "the end of the load until no order waits for a step a worker owes (payment, shipping); auditor: its verdict",
        "over all its invariants",
    ]
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[], help="default: every one")
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
