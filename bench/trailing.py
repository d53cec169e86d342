"""Trailing stops at scale (issue 12, issue 16 item 4): three figures.

1. Ticks evaluated per second through the guard's tick path (`TickFeed.deliver` ->
   `AccountGuard._on_tick` -> `ExitBook.on_mark`), 1,000 trailing positions, one core, with the
   account's rate limits releasing moves as they would live (the woken supervisors run after
   the timed loop). Also the bare `ExitBook.on_mark` rate.
2. Tick-to-amend-sent latency at 50 ms venue latency, real time: from the moment a mark changes on
   the simulated exchange to the moment the amend for the move it caused leaves for the venue
   (the tick's transport, the book, the wake, the trail state written to SQLite, the journaled
   intent). Median and p99.
3. Amends per minute under a fast random walk with the default `[exits]` limits (2 s per position,
   60 per minute per account), against that bound.

Run: `.venv/bin/python bench/trailing.py [--positions 1000] [--ticks 200000] [--seconds 20]`
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import run_bench
from engine.bus import EventBus
from engine.clock import Clock, ManualClock, SystemClock
from engine.domain.reports import PriceTick
from engine.domain.values import PositionSide
from engine.exits.book import AmendLimits, ExitBook, ExitDefaults
from engine.exits.plan import ExitPlan, Trailing
from engine.metrics import Metrics
from engine.protection.guard import AccountGuard
from engine.protection.policy import FixedDistancePricer, ProtectionPolicy
from engine.sim.exchange import HandApi, SimExchange
from engine.sim.venue import SimVenue
from storage.db import Database
from storage.exits import ExitRepo
from storage.journal import Journal
from storage.repositories import PositionRepo, StateRepo

D = Decimal
PLAN = ExitPlan(trailing=Trailing(D("0.5"), D("0.8")))


def markets(n: int) -> dict[str, tuple[str, str, str, str]]:
    return {f"S{i:04d}/USDT:USDT": ("100", "0.01", "1", "1") for i in range(n)}


class TimedVenue(SimVenue):
    """Records when each amend (or replacing place) leaves for the venue."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[float] = []  # seconds from the releasing mark to this amend leaving
        self.origin: dict[str, float] = {}  # symbol -> when the mark that released it was set

    async def amend_stop(self, order, trigger_price, qty):  # type: ignore[no-untyped-def]
        origin = self.origin.pop(order.symbol, None)
        if origin is not None:
            self.sent.append(time.perf_counter() - origin)
        return await super().amend_stop(order, trigger_price, qty)


async def build(n: int, clock: Clock, db_path: Path, limits: AmendLimits, latency: float
                ) -> tuple[AccountGuard, SimExchange, TimedVenue, ExitBook, Database]:
    exchange = SimExchange(clock, seed=5, markets=markets(n))
    hand = HandApi(exchange)
    for symbol in exchange.markets:
        hand.open(symbol, PositionSide.LONG, D(1))
    venue = TimedVenue(exchange, clock, latency=latency, streaming=True)
    db = await Database.open(db_path)
    journal = Journal(db, background=True, linger=0.002)
    bus = EventBus(journal.append, clock=clock)
    policy = ProtectionPolicy(FixedDistancePricer(D(2)))
    book = ExitBook("bench", policy.pricer, ExitDefaults(PLAN), limits, clock, exchange.market,
                    ExitRepo(db))
    guard = AccountGuard("bench", venue, bus=bus, store=PositionRepo(db), state=StateRepo(db),
                         policy=policy, metrics=Metrics(), clock=clock, interval_seconds=3600,
                         seed=1, exits=book)
    await guard.load()
    await guard.reconcile_now()  # adopt and protect every position
    return guard, exchange, venue, book, db


async def tick_throughput(n: int, ticks: int) -> dict[str, Any]:
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as tmp:
        guard, exchange, _venue, book, db = await build(
            n, clock, Path(tmp) / "t.db", AmendLimits(), latency=0.0)
        rng = random.Random(1)
        symbols = sorted(exchange.markets)
        marks = {s: D(100) for s in symbols}
        stream = []
        now = clock.now()
        for i in range(ticks):  # a fast walk with a drift: most positions trail
            s = symbols[i % n]
            marks[s] = (marks[s] * D(1 + rng.gauss(0.0003, 0.002))).quantize(D("0.01"))
            stream.append(PriceTick(s, marks[s], now))
        deliver = guard._on_tick
        start = time.perf_counter()
        cpu = time.process_time()
        for tick in stream:
            deliver(tick)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        evaluated, released = book.ticks_evaluated, book.releases
        activated = sum(1 for st in book.states.values() if st.activated)
        # The bare evaluation (no supervisor lookup), same ticks once more.
        knowns = {s: guard.supervisors[s].known for s in symbols}
        start = time.perf_counter()
        on_mark = book.on_mark
        for tick in stream:
            on_mark(knowns[tick.symbol], tick.mark, now)  # type: ignore[arg-type]
        bare = time.perf_counter() - start
        await guard.stop()
        await db.close()
    return {"positions": n, "ticks": ticks, "ticks_per_s": round(ticks / wall),
            "ticks_per_cpu_s": round(ticks / cpu), "bare_on_mark_per_s": round(ticks / bare),
            "evaluated": evaluated, "released_moves": released, "trails_active": activated}


async def tick_to_amend(n: int, seconds: float, latency: float) -> dict[str, Any]:
    clock = SystemClock()
    limits = AmendLimits()  # the [exits] defaults
    with tempfile.TemporaryDirectory() as tmp:
        guard, exchange, venue, book, db = await build(
            n, clock, Path(tmp) / "l.db", limits, latency=latency)
        origin = venue.origin
        set_at: dict[tuple[str, Decimal], float] = {}
        inner = book.on_mark

        def on_mark(known, mark, at: datetime) -> bool:  # type: ignore[no-untyped-def]
            released = inner(known, mark, at)
            if released:
                # From what released it: the mark's change, or the end of the min interval
                # (a held-back move goes on the guard's timer, `at` then being its time).
                since_at = (clock.now() - at).total_seconds()
                origin[known.symbol] = max(set_at.get((known.symbol, mark), 0.0),
                                           time.perf_counter() - since_at)
            return released

        book.on_mark = on_mark  # type: ignore[method-assign]
        assert guard.ticks is not None
        guard.spawn(guard.ticks.run(), "mark prices")
        await asyncio.sleep(1.2)  # the feed subscribes
        rng = random.Random(2)
        symbols = sorted(exchange.markets)
        step = 0.05
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for s in symbols:
                price = exchange.marks[s] * D(1 + rng.gauss(0.0015, 0.003))
                exchange.set_mark(s, price)
                set_at[(s, exchange.marks[s])] = time.perf_counter()
            await asyncio.sleep(step)
        elapsed = time.perf_counter() - start
        await asyncio.sleep(1.0)
        lat = sorted(venue.sent)
        amends = venue.calls_by_method.get("amend_stop", 0)
        await guard.stop()
        await db.close()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None
    per_min = amends / elapsed * 60
    bound = min(limits.account_per_minute + limits.account_per_minute * elapsed / 60,
                n * 60 / limits.min_interval_seconds) / elapsed * 60
    return {"latency_positions": n, "venue_latency_ms": latency * 1000,
            "walk_seconds": round(elapsed, 1), "amends": amends,
            "amends_per_min": round(per_min, 1), "amends_per_min_bound": round(bound, 1),
            "tick_to_amend_median_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
            "tick_to_amend_p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
            "latency_samples": len(lat)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"bench": "trailing", "python": platform.python_version(),
                               "cpus": os.cpu_count()}
    figures |= await tick_throughput(args.positions, args.ticks)
    print(f"tick path: {figures['ticks_per_s']:,} ticks/s with {args.positions} trailing "
          f"positions (bare on_mark {figures['bare_on_mark_per_s']:,}/s)")
    figures |= await tick_to_amend(args.latency_positions, args.seconds, 0.05)
    print(f"tick-to-amend-sent at 50 ms: median {figures['tick_to_amend_median_ms']} ms, "
          f"p99 {figures['tick_to_amend_p99_ms']} ms; {figures['amends_per_min']} amends/min "
          f"(bound {figures['amends_per_min_bound']})")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--latency-positions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    run_bench(main, parser.parse_args())
