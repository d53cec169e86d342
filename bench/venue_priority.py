"""Protective orders never queue behind reads (issue #9): per venue, in real time.

The real ccxt classes (binanceusdm, bybit, bitget) with `enableRateLimit` on and their HTTP
answered in-process at `fetch` (the contract-test fakes of tests/venues, no network), a
SystemClock, an account with one position and 38 resting stops:

1. how long the stop request waits after a full snapshot, with ccxt's own throttle (one FIFO
   leaky bucket) and with our request budget (its priority lane) in ccxt's place;
2. the same while a loop of snapshots keeps the read share of the budget spent;
3. the request weight one guard cycle (one snapshot) costs, and the poll-interval headroom:
   the shortest interval at which snapshots alone would use up the read share, against the
   default guard interval (10 s).

Human-readable lines first; the last line is one JSON object with every figure.
Run: `.venv/bin/python bench/venue_priority.py` (about 10 s; `--quick` for fewer rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.clock import SystemClock
from engine.domain.reports import StopRequest
from engine.domain.values import PositionSide
from engine.venues.budget import Lane
from tests.venues import payloads as p
from tests.venues.conftest import VENUES, Account, Harness, Request, build

GUARD_INTERVAL = 10.0  # GuardSettings.interval_seconds default
PLACE_EVERY = 0.25  # seconds between stops under load: 4 a second, within each venue's limit
CID = "vgs0123456789abcdef0123"


async def harness(name: str, *, ccxt_throttle: bool) -> tuple[Harness, list[float]]:
    account = Account(positions=[p.long_position(name, "BTC")],
                      stops=[p.resting_stop(name, str(1000 + i), f"vgs{i}", base)
                             for i, base in enumerate(p.BASES[2:40])])
    built = await build(name, account=account, rate_limit=True, clock=SystemClock())
    if ccxt_throttle:
        del built.http.throttle  # the instance hook goes: ccxt's own Throttler is back
    left_at: list[float] = []

    def placed(_request: Request) -> Any:
        left_at.append(time.perf_counter())
        return p.placed(name, "77", CID)

    built.http.route(*p.PLACE_STOP[name], placed)
    return built, left_at


def stop() -> StopRequest:
    return StopRequest("BTC/USDT:USDT", PositionSide.LONG, Decimal("0.01"), Decimal("60000"), CID)


async def after_snapshot(name: str, *, ccxt_throttle: bool,
                         rounds: int) -> tuple[list[float], float]:
    """Seconds from the end of a full snapshot to the stop request leaving; and the longest
    wait the budget imposed on a priority request."""
    built, left_at = await harness(name, ccxt_throttle=ccxt_throttle)
    delays = []
    try:
        for _ in range(rounds):
            await built.venue.snapshot()
            opened = time.perf_counter()
            await built.venue.place_stop(stop())
            delays.append(left_at[-1] - opened)
    finally:
        await built.venue.close()
    return delays, built.venue.budget.stats().priority_wait_max


async def under_load(name: str, *, rounds: int) -> tuple[list[float], float, float]:
    """Stop delays while two loops of snapshots keep the read share spent; and the weight the
    reads got per second meanwhile, which the budget holds to the read share (none on Binance:
    its minute's read share is gone in the first half second)."""
    built, left_at = await harness(name, ccxt_throttle=False)
    stats = built.venue.budget.stats

    async def hammer() -> None:
        while True:
            await built.venue.snapshot()

    loops = [asyncio.create_task(hammer()) for _ in range(2)]
    delays = []
    try:
        await asyncio.sleep(0.5)  # the read share is spent by now
        spent_before, started = stats().spent, time.perf_counter()
        for _ in range(rounds):
            opened = time.perf_counter()
            await built.venue.place_stop(stop())
            delays.append(left_at[-1] - opened)
            await asyncio.sleep(PLACE_EVERY)
        elapsed = time.perf_counter() - started
        read_weight = stats().spent[Lane.READ] - spent_before[Lane.READ]
    finally:
        for loop in loops:  # they may be waiting for the window (a minute on Binance)
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await built.venue.close()
    return delays, read_weight / elapsed, stats().priority_wait_max


async def figures(name: str, rounds: int) -> dict[str, Any]:
    ccxt, _ = await after_snapshot(name, ccxt_throttle=True, rounds=max(2, rounds // 10))
    ours, waited = await after_snapshot(name, ccxt_throttle=False, rounds=rounds)
    loaded, read_rate, waited_under_load = await under_load(name, rounds=rounds)
    built, _ = await harness(name, ccxt_throttle=False)
    await built.venue.snapshot()
    stats = built.venue.budget.stats()
    await built.venue.close()
    limits = stats.limits
    return {
        "venue": name,
        "budget": {"limit": limits.limit, "window_s": limits.window, "reserve": limits.reserve,
                   "source": limits.source},
        "stop_after_snapshot_ccxt_throttle_s": spread(ccxt),
        "stop_after_snapshot_budget_s": spread(ours),
        "stop_under_read_load_budget_s": spread(loaded),
        "read_weight_per_s_under_load": round(read_rate, 1),
        "budget_priority_wait_max_s": max(waited, waited_under_load),
        "weight_per_guard_cycle": stats.snapshot_weight,
        "min_poll_interval_s": round(stats.min_poll_interval, 3),
        "headroom_at_default_interval": round(GUARD_INTERVAL / stats.min_poll_interval, 1),
    }


def spread(delays: list[float]) -> dict[str, float]:
    return {"max": round(max(delays), 4), "median": round(statistics.median(delays), 4)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = 5 if args.quick else 20
    results = []
    for name in VENUES:
        result = await figures(name, rounds)
        results.append(result)
        print(f"{name}: stop after a snapshot: ccxt throttle "
              f"{result['stop_after_snapshot_ccxt_throttle_s']['max']:.3f} s, budget "
              f"{result['stop_after_snapshot_budget_s']['max'] * 1000:.1f} ms (max); under read "
              f"load {result['stop_under_read_load_budget_s']['max'] * 1000:.1f} ms (max); "
              f"{result['weight_per_guard_cycle']:g} weight a cycle, min poll interval "
              f"{result['min_poll_interval_s']} s, headroom "
              f"x{result['headroom_at_default_interval']} at {GUARD_INTERVAL:g} s")
    print(json.dumps({"bench": "venue_priority", "python": platform.python_version(),
                      "rounds": rounds, "venues": results}))


if __name__ == "__main__":
    asyncio.run(main())
