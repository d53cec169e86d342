"""Time-to-protect and the cost of protection, on the simulated exchange (issue #3).

Real time (SystemClock), SimVenue with 50 ms latency per REST call (25 ms each way), the whole
engine (AccountGuard, supervisors, journal and positions in SQLite files in a temp dir):

1. p50/p99 time-to-protect of 200 positions opened by hand, with the stream on (guard.run(),
   the stream wakes the supervisors) and off (REST snapshots every `interval` seconds only);
2. venue calls per reconcile cycle with 1 and with 500 guarded positions;
3. the longest time any position had no resting stop during 1,000 stop replacements on a venue
   without amend-in-place, measured from the exchange's own order events.

Human-readable lines first; the last line is one JSON object with every figure.
Run: `make bench` (or `.venv/bin/python bench/time_to_protect.py`).
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
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import run_bench
from engine.bus import EventBus
from engine.clock import SystemClock
from engine.domain import events as ev
from engine.domain.reports import (
    OrderKind,
    OrderUpdate,
    PositionUpdate,
    StopRequest,
    VenueEvent,
)
from engine.domain.values import PositionSide
from engine.metrics import Metrics
from engine.protection.guard import AccountGuard
from engine.protection.policy import FixedDistancePricer, ProtectionPolicy
from engine.sim.exchange import HandApi, SimExchange
from engine.sim.venue import SimVenue
from storage.db import Database
from storage.journal import Journal
from storage.repositories import PositionRepo, StateRepo
from vigil.runtime import JOURNAL_LINGER_SECONDS

D = Decimal
LATENCY = 0.05
ACCOUNT = "bench"


def markets(n: int) -> dict[str, tuple[str, str, str, str]]:
    """n linear perpetuals, one position each (one-way mode): S0000/USDT:USDT, ..."""
    return {f"S{i:04d}/USDT:USDT": ("100", "0.01", "0.1", "0.1") for i in range(n)}


@dataclass
class Setup:
    clock: SystemClock
    exchange: SimExchange
    hand: HandApi
    venue: SimVenue
    db: Database
    guard: AccountGuard
    metrics: Metrics
    events: list[ev.Event] = field(default_factory=list)

    async def close(self) -> None:
        await self.guard.stop()
        await self.db.close()


async def build(workdir: Path, name: str, *, n_markets: int, streaming: bool,
                amend_in_place: bool = True, interval: float = 10.0) -> Setup:
    clock = SystemClock()
    exchange = SimExchange(clock, seed=1, markets=markets(n_markets))
    venue = SimVenue(exchange, clock, latency=LATENCY, streaming=streaming,
                     amend_in_place=amend_in_place)
    db = await Database.open(workdir / f"{name}.db")
    # As Engine.build composes them: intents awaited until committed, the rest group-committed;
    # subscribers with I/O queued off the protection path; events stamped by the clock.
    journal = Journal(db, background=True, linger=JOURNAL_LINGER_SECONDS)
    bus = EventBus(journal.append, queue_subscribers=True, clock=clock)
    metrics = Metrics()
    setup = Setup(clock, exchange, HandApi(exchange), venue, db, None, metrics)  # type: ignore[arg-type]

    async def collect(event: ev.Event) -> None:
        setup.events.append(event)

    bus.subscribe(collect, queued=False)  # in-memory: sees each event at once
    setup.guard = AccountGuard(
        ACCOUNT, venue, bus=bus, store=PositionRepo(db), state=StateRepo(db),
        policy=ProtectionPolicy(FixedDistancePricer(D(2))), metrics=metrics, clock=clock,
        interval_seconds=interval, seed=1)
    await setup.guard.load()
    return setup


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


async def wait_until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.005)


# --- 1. time-to-protect -------------------------------------------------------------------
@dataclass
class TtpResult:
    mode: str
    positions: int
    guard_seconds: list[float]  # StopPlaced.time_to_protect (what the guard journals)
    venue_seconds: list[float]  # open fill -> our stop resting, on the exchange's clock
    histogram_count: float
    wall_seconds: float

    def summary(self) -> dict[str, float]:
        return {
            "p50_s": round(percentile(self.guard_seconds, 50), 3),
            "p99_s": round(percentile(self.guard_seconds, 99), 3),
            "max_s": round(max(self.guard_seconds), 3),
            "mean_s": round(statistics.fmean(self.guard_seconds), 3),
            "venue_side_p99_s": round(percentile(self.venue_seconds, 99), 3),
        }


async def time_to_protect(workdir: Path, *, streaming: bool, positions: int, interval: float,
                          spread: float, rng: random.Random) -> TtpResult:
    """Open `positions` by hand at random moments over `spread` seconds while guard.run()
    is running; every position must end up with its stop."""
    s = await build(workdir, f"ttp-{'stream' if streaming else 'rest'}", n_markets=positions,
                    streaming=streaming, interval=interval)
    opened_at: dict[str, datetime] = {}
    protected_at: dict[str, datetime] = {}

    def on_event(event: VenueEvent) -> None:
        if isinstance(event, OrderUpdate) and event.order.kind is OrderKind.STOP_LOSS \
                and event.order.is_resting and event.order.symbol not in protected_at:
            protected_at[event.order.symbol] = event.order.updated_at

    s.exchange.listen(on_event)
    runner = asyncio.create_task(s.guard.run())
    started = time.monotonic()
    try:
        await wait_until(lambda: s.guard.last_reconcile is not None, 5)
        await asyncio.sleep(0.05)
        moments = sorted(rng.uniform(0, spread) for _ in range(positions))
        symbols = sorted(s.exchange.markets)
        t0 = time.monotonic()
        for symbol, moment in zip(symbols, moments, strict=True):
            delay = t0 + moment - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            s.hand.open(symbol, rng.choice([PositionSide.LONG, PositionSide.SHORT]), D(1))
            opened_at[symbol] = s.exchange.positions[symbol].opened_at  # type: ignore[assignment]
        await wait_until(lambda: sum(isinstance(e, ev.StopPlaced) for e in s.events)
                         >= positions, interval * 3 + 30)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await s.close()
    placed = [e for e in s.events if isinstance(e, ev.StopPlaced)]
    guard_seconds = [float(e.time_to_protect) for e in placed if e.time_to_protect is not None]
    venue_seconds = [(protected_at[sym] - opened_at[sym]).total_seconds() for sym in opened_at]
    count = s.metrics.registry.get_sample_value(
        "vigil_time_to_protect_seconds_count", {"account": ACCOUNT}) or 0.0
    one_each = len({e.symbol for e in placed}) == positions == len(placed)
    assert one_each, "every position protected exactly once"
    assert all(len([o for o in s.exchange.open_orders() if o.symbol == sym]) == 1
               for sym in opened_at)
    return TtpResult("streaming" if streaming else "rest-only", positions, guard_seconds,
                     venue_seconds, count, time.monotonic() - started)


# --- 2. venue calls per reconcile cycle ------------------------------------------------------
async def calls_per_cycle(workdir: Path, n: int) -> dict[str, float]:
    s = await build(workdir, f"calls-{n}", n_markets=n, streaming=False)
    try:
        for symbol in sorted(s.exchange.markets):
            s.hand.open(symbol, PositionSide.LONG, D(1))
        before = s.venue.calls
        t = time.monotonic()
        first = await s.guard.reconcile_now()  # adopts and protects all of them
        first_seconds = time.monotonic() - t
        first_calls = s.venue.calls - before
        assert first.unprotected_after == ()
        steady: list[int] = []
        seconds: list[float] = []
        for _ in range(5):
            before = s.venue.calls
            t = time.monotonic()
            report = await s.guard.reconcile_now()
            seconds.append(time.monotonic() - t)
            steady.append(s.venue.calls - before)
            assert report.venue_calls == steady[-1] and report.positions == n
        assert len(set(steady)) == 1
        return {"positions": n, "calls_per_cycle": steady[0],
                "first_cycle_calls": first_calls,
                "first_cycle_seconds": round(first_seconds, 3),
                "cycle_seconds": round(statistics.median(seconds), 3)}
    finally:
        await s.close()


# --- 3. the replacement gap ----------------------------------------------------------------
class GapWatch:
    """Follows the exchange's own event queue (`SimExchange.subscribe()`), whose events are
    emitted synchronously at every mutation, in order, each stamped with the exchange clock:
    for every position, every interval with no resting stop on its close side."""

    def __init__(self, exchange: SimExchange) -> None:
        self.queue = exchange.subscribe()
        self.resting: dict[str, dict[str, Any]] = {}  # symbol -> order id -> report
        self.sides: dict[str, PositionSide] = {}
        self.open_gap: dict[str, datetime] = {}
        self.gaps: list[float] = []
        self.events = 0
        for order in exchange.open_orders():
            self.resting.setdefault(order.symbol, {})[order.order_id] = order
        for symbol, pos in exchange.positions.items():
            self.sides[symbol] = pos.side

    def drain(self) -> None:
        while not self.queue.empty():
            event = self.queue.get_nowait()
            self.events += 1
            if isinstance(event, OrderUpdate):
                order = event.order
                book = self.resting.setdefault(order.symbol, {})
                if order.is_resting:
                    book[order.order_id] = order
                else:
                    book.pop(order.order_id, None)
                self._check(order.symbol, order.updated_at)
            elif isinstance(event, PositionUpdate):
                if event.position is None:
                    self.sides.pop(event.symbol, None)
                    self.open_gap.pop(event.symbol, None)
                else:
                    self.sides[event.symbol] = event.position.side
                    self._check(event.symbol, event.position.updated_at)

    def _check(self, symbol: str, at: datetime) -> None:
        side = self.sides.get(symbol)
        if side is None:
            return
        covered = any(o.is_stop_for(side) for o in self.resting.get(symbol, {}).values())
        if not covered:
            self.open_gap.setdefault(symbol, at)
        elif symbol in self.open_gap:
            self.gaps.append((at - self.open_gap.pop(symbol)).total_seconds())

    @property
    def longest(self) -> float:
        return max(self.gaps, default=0.0)


async def replacement_gap(workdir: Path, *, replacements: int, positions: int
                          ) -> dict[str, float]:
    s = await build(workdir, "replace", n_markets=positions, streaming=False,
                    amend_in_place=False)
    try:
        symbols = sorted(s.exchange.markets)
        for symbol in symbols:
            s.hand.open(symbol, PositionSide.LONG, D(5))
        await s.guard.reconcile_now()
        watch = GapWatch(s.exchange)
        rounds = 0
        t = time.monotonic()
        while _replaced(s) < replacements:
            rounds += 1
            for i, symbol in enumerate(symbols):  # a partial close or an add on every position
                if (rounds + i) % 2:
                    s.hand.open(symbol, PositionSide.LONG, D("0.5"))
                else:
                    s.hand.close(symbol, D("0.5"))
            await s.guard.reconcile_now()
            watch.drain()
            assert not watch.open_gap, f"left without a stop: {watch.open_gap}"
        seconds = time.monotonic() - t
        assert all(len([o for o in s.exchange.open_orders() if o.symbol == sym]) == 1
                   for sym in symbols)
        return {"replacements": _replaced(s), "positions": positions, "rounds": rounds,
                "order_events_watched": watch.events, "gaps": len(watch.gaps),
                "longest_gap_s": watch.longest, "seconds": round(seconds, 1)}
    finally:
        await s.close()


def _replaced(s: Setup) -> int:
    return sum(isinstance(e, ev.StopCancelled) and e.reason == "replaced" for e in s.events)


async def control_cancel_then_place(workdir: Path, replacements: int) -> float:
    """The same watch on the naive way (cancel, then place): shows what a gap looks like."""
    s = await build(workdir, "control", n_markets=1, streaming=False, amend_in_place=False)
    try:
        (symbol,) = s.exchange.markets
        s.hand.open(symbol, PositionSide.LONG, D(5))
        await s.guard.reconcile_now()
        watch = GapWatch(s.exchange)
        for i in range(replacements):
            (stop,) = [o for o in s.exchange.open_orders() if o.symbol == symbol]
            await s.venue.cancel_order(stop)
            await s.venue.place_stop(StopRequest(symbol, PositionSide.LONG, D(5), D(98),
                                                 f"ctl{i}"))
            watch.drain()
        return watch.longest
    finally:
        await s.close()


# --- main -----------------------------------------------------------------------------------
async def main(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        workdir = Path(tmp)
        print(f"simulated exchange, {LATENCY * 1000:.0f} ms venue latency per REST call, "
              f"SQLite journal; interval {args.interval:g} s; {os.cpu_count()} cores, "
              f"Python {platform.python_version()}")

        stream = await time_to_protect(workdir, streaming=True, positions=args.positions,
                                       interval=args.interval, spread=args.spread, rng=rng)
        s_stream = stream.summary()
        print(f"time-to-protect, streaming, {stream.positions} hand-opened positions over "
              f"{args.spread:g} s: p50 {s_stream['p50_s']:.3f} s, p99 {s_stream['p99_s']:.3f} s"
              f", max {s_stream['max_s']:.3f} s (venue-side p99 "
              f"{s_stream['venue_side_p99_s']:.3f} s)")
        burst = await time_to_protect(workdir / "burst", streaming=True,
                                      positions=args.positions, interval=args.interval,
                                      spread=0.0, rng=rng) if args.burst else None
        if burst:
            s_burst = burst.summary()
            print(f"time-to-protect, streaming, all {burst.positions} opened at once: p50 "
                  f"{s_burst['p50_s']:.3f} s, p99 {s_burst['p99_s']:.3f} s")
        rest = await time_to_protect(workdir, streaming=False, positions=args.positions,
                                     interval=args.interval, spread=args.interval, rng=rng)
        s_rest = rest.summary()
        print(f"time-to-protect, streaming off (REST every {args.interval:g} s), "
              f"{rest.positions} positions over one interval: p50 {s_rest['p50_s']:.3f} s, "
              f"p99 {s_rest['p99_s']:.3f} s, max {s_rest['max_s']:.3f} s")

        one = await calls_per_cycle(workdir, 1)
        many = await calls_per_cycle(workdir, args.many)
        print(f"venue calls per reconcile cycle: {one['calls_per_cycle']} with 1 position, "
              f"{many['calls_per_cycle']} with {args.many} (cycle {one['cycle_seconds']:.3f} s"
              f" vs {many['cycle_seconds']:.3f} s; the first cycle, placing {args.many} stops,"
              f" took {many['first_cycle_calls']} calls, {many['first_cycle_seconds']:.3f} s)")

        gap = await replacement_gap(workdir, replacements=args.replacements,
                                    positions=args.replace_positions)
        control = await control_cancel_then_place(workdir, 20)
        print(f"{gap['replacements']} stop replacements (place-new-then-cancel, no amend) on "
              f"{gap['positions']} positions: longest time without a resting stop "
              f"{gap['longest_gap_s']:.3f} s ({gap['gaps']} gaps in "
              f"{gap['order_events_watched']} exchange events); control, cancel-then-place: "
              f"{control:.3f} s")

    targets = {
        "p99_streaming_le_0.5s": s_stream["p99_s"] <= 0.5,
        "p99_rest_le_interval_plus_0.5s": s_rest["p99_s"] <= args.interval + 0.5,
        "calls_per_cycle_equal_1_vs_many": one["calls_per_cycle"] == many["calls_per_cycle"],
        "replacement_gap_zero": gap["longest_gap_s"] == 0,
    }
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))
    result: dict[str, Any] = {
        "latency_ms": LATENCY * 1000,
        "interval_s": args.interval,
        "positions": args.positions,
        "cores": os.cpu_count(),
        "ttp_streaming_p50_s": s_stream["p50_s"],
        "ttp_streaming_p99_s": s_stream["p99_s"],
        "ttp_streaming_max_s": s_stream["max_s"],
        "ttp_streaming_spread_s": args.spread,
        "ttp_rest_p50_s": s_rest["p50_s"],
        "ttp_rest_p99_s": s_rest["p99_s"],
        "ttp_rest_max_s": s_rest["max_s"],
        "calls_per_cycle_1": one["calls_per_cycle"],
        f"calls_per_cycle_{args.many}": many["calls_per_cycle"],
        f"first_cycle_calls_{args.many}": many["first_cycle_calls"],
        f"cycle_seconds_{args.many}": many["cycle_seconds"],
        "replacements": gap["replacements"],
        "replacement_longest_gap_s": gap["longest_gap_s"],
        "control_cancel_then_place_gap_s": round(control, 3),
        "targets_met": targets,
    }
    if burst:
        result["ttp_streaming_burst_p50_s"] = s_burst["p50_s"]
        result["ttp_streaming_burst_p99_s"] = s_burst["p99_s"]
    return result


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10.0,
                        help="guard.interval in seconds (REST snapshot period)")
    parser.add_argument("--spread", type=float, default=5.0,
                        help="seconds over which the hand opens the positions (streaming)")
    parser.add_argument("--burst", action=argparse.BooleanOptionalAction, default=True,
                        help="also open all positions at the same instant")
    parser.add_argument("--many", type=int, default=500)
    parser.add_argument("--replacements", type=int, default=1000)
    parser.add_argument("--replace-positions", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    run_bench(main, parse())
