"""The soak's pure parts: memory read and judged, lag kept, scenarios chosen, the report's tables."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

from chaos.run import Scenario
from chaos.soak import (
    MIB,
    Fault,
    GroupLag,
    KeyFamily,
    Life,
    Memory,
    Outcome,
    clock,
    judge,
    k6_lines,
    lag_table,
    memory_table,
    parse_smaps_rollup,
    plain_mesh_scenarios,
    redis_lines,
    report,
)

SMAPS_ROLLUP = """\
55d0c0a00000-7ffd5a5f1000 ---p 00000000 00:00 0                          [rollup]
Rss:              104704 kB
Pss:               80123 kB
Pss_Dirty:         74000 kB
Shared_Clean:      30000 kB
Shared_Dirty:        100 kB
Private_Clean:      1200 kB
Private_Dirty:     73404 kB
Referenced:       104704 kB
Anonymous:         73500 kB
Swap:                  0 kB
"""


def mib(rss: float, uss: float) -> Memory:
    return Memory(int(rss * MIB), int(uss * MIB))


def life(name: str, started: float, *samples: tuple[float, Memory], alive: bool = True) -> Life:
    return Life(name, 100, started, list(samples), alive_at_end=alive)


def test_rss_and_uss_from_smaps_rollup() -> None:
    memory = parse_smaps_rollup(SMAPS_ROLLUP)
    assert memory == Memory(104704 * 1024, (1200 + 73404) * 1024)


def test_growth_is_judged_from_the_first_sample_after_the_warm_up_to_the_last() -> None:
    grew = life("order", 0.0, (0.0, mib(50, 30)), (60.0, mib(100, 70)), (300.0, mib(109, 76)))
    [row] = judge([grew], warmup=60, min_window=120, limit=0.10)
    assert row.base == (60.0, mib(100, 70)) and row.last == (300.0, mib(109, 76))
    assert row.growth is not None and round(row.growth[0], 3) == 0.09
    assert row.verdict == "PASS"  # the cold start (50 MiB) is not the baseline


def test_a_step_then_flat_shows_in_the_second_half_column() -> None:
    stepped = life("checkout", 0.0, (60.0, mib(100, 70)), (180.0, mib(110, 80)), (420.0, mib(110, 80.4)))
    [row] = judge([stepped], warmup=60, min_window=120, limit=0.10)
    assert row.verdict == "FAIL" and row.late is not None and round(row.late, 3) == 0.005
    leaking = life("catalog", 0.0, (60.0, mib(100, 70)), (240.0, mib(104, 74)), (420.0, mib(108, 78)))
    [row] = judge([leaking], warmup=60, min_window=120, limit=0.10)
    assert row.late is not None and round(row.late, 3) == 0.054


def test_ten_percent_in_rss_or_uss_fails() -> None:
    rss = life("catalog", 0.0, (60.0, mib(100, 70)), (300.0, mib(110, 70)))
    uss = life("payment", 0.0, (60.0, mib(100, 70)), (300.0, mib(105, 77)))  # RSS +5 %, USS +10 %
    assert [row.verdict for row in judge([rss, uss], warmup=60, min_window=120, limit=0.10)] == ["FAIL", "FAIL"]


def test_a_restarted_process_is_judged_from_its_own_warm_up() -> None:
    restarted = life("order", 130.0, (130.0, mib(60, 40)), (190.0, mib(100, 70)), (330.0, mib(104, 72)))
    [row] = judge([restarted], warmup=60, min_window=120, limit=0.10)
    assert row.base is not None and row.base[0] == 190.0 and row.verdict == "PASS"


def test_a_life_watched_too_briefly_is_not_judged() -> None:
    killed = life("order", 0.0, (60.0, mib(100, 70)), (90.0, mib(150, 120)), alive=False)
    young = life("order", 500.0, (500.0, mib(60, 40)), (540.0, mib(90, 60)))
    short, none = judge([killed, young], warmup=60, min_window=120, limit=0.10)
    assert (short.growth, short.verdict) == (None, "n/a: watched 30 s after its warm-up")
    assert (none.growth, none.verdict) == (None, "n/a: no sample after its warm-up")


def test_a_life_a_fault_stopped_ends_as_that_fault_began() -> None:
    # Sampled at 480 s as the rolling restart began, then at 487 s while the
    # services it calls restarted and it retried: a burst it never lived to shed.
    stopped = life("checkout", 0.0, (60.0, mib(100, 70)), (480.0, mib(104, 74)), (487.0, mib(110, 80)), alive=False)
    [row] = judge([stopped], warmup=60, min_window=120, limit=0.10, faults_at=[180.0, 480.0])
    assert row.last == (480.0, mib(104, 74)) and row.verdict == "PASS"
    # Stopped at once by the fault that began just after its sample (the first
    # service of the rolling restart): that sample is its last.
    first = life("catalog", 0.0, (60.0, mib(100, 70)), (420.0, mib(104, 74)), (479.9, mib(105, 75)), alive=False)
    [row] = judge([first], warmup=60, min_window=120, limit=0.10, faults_at=[420.0, 480.0])
    assert row.last == (479.9, mib(105, 75))
    # Alive at the end: its last sample, whatever faults came before.
    stayed = life("checkout", 0.0, (60.0, mib(100, 70)), (480.0, mib(104, 74)), (600.0, mib(110, 80)))
    [row] = judge([stayed], warmup=60, min_window=120, limit=0.10, faults_at=[180.0, 480.0])
    assert row.last == (600.0, mib(110, 80)) and row.verdict == "FAIL"


def test_memory_table_marks_restarts_and_stops() -> None:
    rows = judge(
        [
            life("order", 0.0, (60.0, mib(100, 70)), (70.0, mib(100, 70)), alive=False),
            life("order", 75.0, (80.0, mib(60, 40)), (140.0, mib(95, 66)), (600.0, mib(99, 69))),
        ],
        warmup=60,
        min_window=120,
        limit=0.10,
    )
    table = memory_table(rows)
    assert table[2].startswith("| order | 100 | from the start, stopped by a fault | 1:00 | 100.0 | 70.0 | 1:10 |")
    assert table[2].endswith("| - | - | - | n/a: watched 10 s after its warm-up |")
    assert table[3] == (
        "| order | 100 | restarted at 1:15, to the end | 2:20 | 95.0 | 66.0 | 10:00 | 99.0 | 69.0 "
        "| +4.2% | +4.5% | +4.5% | PASS |"
    )


def test_lag_keeps_the_latest_and_the_largest() -> None:
    lag = GroupLag()
    lag.add(10, 0.5, at=10.0)
    lag.add(900, 19.0, at=20.0)
    lag.add(3, 0.1, at=30.0)
    assert (lag.behind, lag.age, lag.max_behind, lag.max_age, lag.max_at) == (3, 0.1, 900, 19.0, 20.0)
    assert lag_table({"events:order-updates / order": lag})[2] == (
        "| events:order-updates / order | 900 | 19.0 | 0:20 | 3 | 0.1 |"
    )


def test_only_scenarios_a_plain_embedded_mesh_can_run_are_picked() -> None:
    def scenario(name: str, **shape: object) -> Scenario:
        return cast(Scenario, SimpleNamespace(name=name, fault=name, inject=None, **shape))

    picked = plain_mesh_scenarios(
        [
            scenario("redis-killed"),  # no profile attribute: embedded
            scenario("order-killed-twice", profile="embedded", proxied=(), catalog_replicas=1, env={}),
            scenario("mariadb-stopped", profile="full"),
            scenario("payment-late", profile="embedded", proxied=("payment",)),
            scenario("catalog-replica-killed", catalog_replicas=2),
            scenario("forwarder-killed", env={"FAILPOINTS": "forwarder.sent"}),
        ]
    )
    assert [s.name for s in picked] == ["order-killed-twice", "redis-killed"]  # by name: the seed's order


def test_k6_lines_from_the_summary_export() -> None:
    summary = {
        "metrics": {
            "iterations": {"count": 66000, "rate": 109.98},
            "orders_placed": {"count": 65990},
            "errors": {"passes": 10, "fails": 65990, "value": 10 / 66000, "thresholds": {"rate<=0.01": False}},
            "retries": {"count": 42},
            "grpc_req_duration{rpc:PlaceOrder}": {
                "med": 21.4,
                "p(99)": 2450.0,
                "max": 5003.2,
                "thresholds": {"p(95)<1000": False, "p(99)<2000": True},
            },
            "place_order_duration": {"med": 22, "p(99)": 2600, "max": 5300},
        }
    }
    rows = dict(line.strip("| ").split(" | ") for line in k6_lines(summary, 99)[2:])
    assert rows == {
        "PlaceOrder calls (k6 iterations)": "66000 (110.0/s)",
        "answered OK": "65990",
        "answered short of stock": "0",
        "errors: final answer not OK after k6's tries": "10 (0.015%)",
        "attempts retried (UNAVAILABLE, DEADLINE_EXCEEDED)": "42",
        "iterations k6 dropped (no VU free)": "0",
        "PlaceOrder per attempt p50 / p99 / max, ms": "21 / 2450 / 5003",
        "PlaceOrder with retries p50 / p99 / max, ms": "22 / 2600 / 5300",
        "k6 thresholds": "crossed: `grpc_req_duration{rpc:PlaceOrder}` p(99)<2000",
        "k6 exit status": "99",
    }
    assert k6_lines({}, 107) == ["k6 left no summary (see var/soak/k6.log)"]


def test_redis_families_that_expire_after_the_run_are_projected_to_their_ttl() -> None:
    data = [(0.0, 25, 2 * MIB), (60.0, 13000, 8 * MIB), (600.0, 140000, 30 * MIB)]
    families = [
        KeyFamily("catalog:reserved", 66000, 136.0, 604_700),  # 7 days
        KeyFamily("checkout:request", 66000, 424.0, 86_390),  # 24 h
        KeyFamily("lease:order-money-orphans", 1, 104.0, 4),
        KeyFamily("events:order-placed", 2, 4752.0, -1),
    ]
    lines = redis_lines(data, families, 600)
    assert lines[0].startswith(
        "Redis's memory is mostly its data (DBSIZE, INFO used_memory): 13000 keys, 8.0 MiB at 1:00; "
    )
    assert "140000 keys, 30.0 MiB at 10:00." in lines[0]
    assert lines[4] == "| catalog:reserved | 66000 | 136 | 8.6 | 7.0 d | 8,627 |"  # 8.56 MiB x 604,700 s / 600 s
    assert lines[5] == "| checkout:request | 66000 | 424 | 26.7 | 24.0 h | 3,843 |"
    assert lines[6] == "| lease:order-money-orphans | 1 | 104 | 0.0 | 4 s | 0 |"  # turns over within the run
    assert lines[7] == "| events:order-placed | 2 | 4752 | 0.0 | never | - |"
    assert redis_lines(data[:1], families, 600) == []  # no sample after the warm-up


def test_clock() -> None:
    assert [clock(0), clock(59.9), clock(61), clock(605)] == ["0:00", "0:59", "1:01", "10:05"]


def test_the_report_says_what_failed_and_why() -> None:
    judged = judge(
        [
            life("order", 0.0, (60.0, mib(100, 70)), (600.0, mib(115, 80))),
            life("redis", 0.0, (60.0, mib(20, 10)), (600.0, mib(40, 30))),
            life("shipping", 0.0, (60.0, mib(96, 66)), (130.0, mib(96, 66)), alive=False),
            life("shipping", 200.0, (200.0, mib(60, 40)), (260.0, mib(96, 66)), (570.0, mib(99, 68))),
        ],
        warmup=60,
        min_window=120,
        limit=0.10,
    )
    outcome = Outcome(
        seed=7,
        rate=100,
        minutes=10,
        started=datetime(2026, 11, 30, 2, 0, tzinfo=UTC),
        faults=[
            Fault("shipping-down", "shipping SIGKILLed, down 60 s", 120.0, 61.5, "ok"),
            Fault("poison", "undecodable entries", 240.0, 90.0, "failed: TimeoutError: stuck"),
        ],
        judged=judged,
        lags={},
        lag_errors=2,
        caught_up=None,
        k6={},
        k6_code=99,
        acked=60000,
        audit_code=0,
        audit="invariant checked violations  verdict\n\nclean\n",
        redis_data=[],
        families=[],
        pool=["poison", "shipping-down"],
        sample_errors=[],
        attempts="8",
        seconds=720.0,
    )
    assert outcome.audit_clean and not outcome.memory_ok
    assert judged[1].verdict == "DATA"  # Redis's growth is its data, reported by key family
    text = report(outcome, host="2 cores", at_commit="abc1234")
    assert "`make soak MINUTES=10 RATE=100` (`python -m chaos.soak`), started 2026-11-30 02:00 UTC, 12.0 min" in text
    assert "- seed: 7 (`SOAK_SEED=7 make soak MINUTES=10 RATE=100` injects the same faults" in text
    assert "**auditor: clean**; **memory: FAIL** (order): 3 of 4 process lives judged" in text
    assert "- faults: 2 injected, 1 failed or found a problem themselves" in text
    assert "| 4:00 | poison | undecodable entries | 90.0 | failed: TimeoutError: stuck |" in text
    assert "(2 samples missed while Redis was down)" in text
    assert "After the load: some group was still behind after 120 s." in text
    assert "| shipping | 100 | restarted at 3:20, to the end | 4:20 | 96.0 | 66.0 | 9:30 | 99.0 | 68.0 |" in text
