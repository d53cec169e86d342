"""Entry-to-protected: first fill -> stop resting, p50/p99, at 50 ms venue latency (issue 11).

Real time (SystemClock), SimVenue with 50 ms per REST call (25 ms each way), the whole entry path
(EntryService as the symbol's supervisor, OrderGateway, journal and state in SQLite files in a
temp dir). Two venues:
- *unattached* (Binance-like): the stop is placed the moment the entry's fill is answered,
  sized to what filled; target p99 <= 0.15 s;
- *attached* (Bybit/Bitget-like): the stop rides on the entry order; target 0;
- *limit* (Binance-like, limit entries 1 % from the mark): each rests until the exchange fills it
  at a random moment 0.1-1.5 s after the send (the limit's timeout is 3 s); its fill is seen by
  the entry's look-ups (every 0.5 s), so fill -> stop is bounded by that interval plus a call.

Measured on the exchange's own clock: from the entry's fill to the first resting stop-loss on its
symbol (a listener called synchronously at every mutation), and as the engine journals it
(`EntryProtected.time_to_protect`). `--chaos N` also runs the randomized fault/crash test's body
over N seeds (tests/engine/test_entries_chaos.py) on a manual clock and counts the endings.

Human-readable lines first; the last line is one JSON object with every figure.
Run: `.venv/bin/python bench/entry.py [--entries 200] [--concurrency 10] [--chaos 0]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import run_bench
from bench.time_to_protect import markets, percentile
from engine.bus import EventBus
from engine.clock import ManualClock, SystemClock
from engine.domain import events as ev
from engine.domain.reports import (
    FillUpdate,
    OrderKind,
    OrderStatus,
    OrderUpdate,
    VenueEvent,
)
from engine.domain.values import PositionSide
from engine.entries.gates import RiskLimits
from engine.entries.model import (
    Amount,
    EntryRequest,
    EntrySource,
    EntryStatus,
    PriceKind,
    PriceSpec,
    SizeKind,
)
from engine.entries.service import EntryService
from engine.metrics import Metrics
from engine.protection.guard import AccountGuard
from engine.protection.policy import FixedDistancePricer, ProtectionPolicy
from engine.sim.exchange import HandApi, SimExchange
from engine.sim.venue import FaultPlan, SimVenue
from storage.db import Database
from storage.journal import Journal
from storage.repositories import PositionRepo, StateRepo
from tests.engine.conftest import Rig, SpyVenue, default_policy, make_guard, open_db
from tests.engine.test_entries_chaos import one_seed
from vigil.runtime import JOURNAL_LINGER_SECONDS

D = Decimal
LATENCY = 0.05
ACCOUNT = "bench"


class FillToStop:
    """The exchange's truth: when each symbol's entry filled and when a stop first rested."""

    def __init__(self, clock: SystemClock) -> None:
        self.clock = clock
        self.filled: dict[str, float] = {}
        self.stopped: dict[str, float] = {}

    def __call__(self, event: VenueEvent) -> None:
        now = self.clock.monotonic()
        if isinstance(event, FillUpdate) and not event.fill.reduce_only:
            self.filled.setdefault(event.fill.symbol, now)
        elif (isinstance(event, OrderUpdate) and event.order.kind is OrderKind.STOP_LOSS
              and event.order.status is OrderStatus.OPEN):
            self.stopped.setdefault(event.order.symbol, now)

    def seconds(self) -> list[float]:
        # An attached stop rests before the fill shows: never naked, 0.
        return [max(self.stopped[s] - t, 0.0) for s, t in self.filled.items()
                if s in self.stopped]


async def fill_limits(exchange: SimExchange, clock: SystemClock, seed: int) -> None:
    """The book trades through each resting limit entry once, 0.1-1.5 s after it was sent."""
    rng = random.Random(seed)
    due: dict[str, float] = {}
    while True:
        now = clock.monotonic()
        for order in exchange.open_orders():
            if order.kind is not OrderKind.LIMIT:
                continue
            at = due.setdefault(order.order_id, now + rng.uniform(0.1, 1.5))
            if now >= at:
                exchange.fill_limit(order.order_id)
        await asyncio.sleep(0.01)


async def run_mode(workdir: Path, name: str, *, attached: bool, entries: int,
                   concurrency: int, limit: bool = False) -> dict[str, Any]:
    clock = SystemClock()
    exchange = SimExchange(clock, seed=1, markets=markets(entries))
    venue = SimVenue(exchange, clock, latency=LATENCY, streaming=True, attached_stop=attached)
    db = await Database.open(workdir / f"{name}.db")
    journal = Journal(db, background=True, linger=JOURNAL_LINGER_SECONDS)
    bus = EventBus(journal.append, queue_subscribers=True, clock=clock)
    guard = AccountGuard(ACCOUNT, venue, bus=bus, store=PositionRepo(db), state=StateRepo(db),
                         policy=ProtectionPolicy(FixedDistancePricer(D(2))), metrics=Metrics(),
                         clock=clock, interval_seconds=10.0, seed=1)
    await guard.load()
    service = EntryService({ACCOUNT: guard}, limits=RiskLimits(limit_timeout_seconds=3.0),
                           state=guard.state, bus=bus, clock=clock, hold_of=lambda a: None)
    protected: list[float] = []

    async def collect(event: ev.Event) -> None:
        if isinstance(event, ev.EntryProtected):
            protected.append(float(event.time_to_protect))

    bus.subscribe(collect, queued=False)
    truth = FillToStop(clock)
    exchange.listen(truth)
    runner = asyncio.create_task(guard.run())
    filler = asyncio.create_task(fill_limits(exchange, clock, 1)) if limit else None
    gate = asyncio.Semaphore(concurrency)
    symbols = sorted(exchange.markets)

    async def one(i: int) -> EntryStatus:
        side = PositionSide.LONG if i % 2 else PositionSide.SHORT
        price = exchange.marks[symbols[i]] * (1 - D("0.01") * side.sign) if limit else None
        async with gate:
            result = await service.open(EntryRequest(
                ACCOUNT, symbols[i], side, Amount(SizeKind.NOTIONAL, D(50)),
                PriceSpec(PriceKind.PERCENT, D(2)), f"b{i}", EntrySource.API,
                limit_price=price))
            return result.status

    started = time.monotonic()
    statuses = await asyncio.gather(*(one(i) for i in range(entries)))
    wall = time.monotonic() - started
    if filler is not None:
        filler.cancel()
    runner.cancel()
    await guard.stop()
    await asyncio.gather(runner, return_exceptions=True)
    await journal.flush()
    await db.close()
    venue_side = truth.seconds()
    return {
        "entries": entries, "protected": sum(s is EntryStatus.PROTECTED for s in statuses),
        "fill_to_stop_p50_s": round(percentile(venue_side, 50), 3),
        "fill_to_stop_p99_s": round(percentile(venue_side, 99), 3),
        "fill_to_stop_max_s": round(max(venue_side), 3),
        "journaled_ttp_p50_s": round(percentile(protected, 50), 3),
        "journaled_ttp_p99_s": round(percentile(protected, 99), 3),
        "wall_s": round(wall, 1),
    }


async def chaos(seeds: int) -> dict[str, int]:
    """The randomized test's body over more seeds (manual clock, SQLite in a temp dir)."""
    outcomes: dict[str, int] = {}
    opened: list[Database] = []
    with tempfile.TemporaryDirectory() as tmp:

        async def factory(*, exchange: SimExchange, faults: FaultPlan | None = None,
                          spy: bool = False, db_name: str = "v.db",
                          attached_stop: bool = False) -> Rig:
            clock = exchange.clock
            assert isinstance(clock, ManualClock)
            venue = SimVenue(exchange, clock, faults=faults, attached_stop=attached_stop)
            port: SimVenue | SpyVenue = SpyVenue(venue) if spy else venue
            db, journal = await open_db(Path(tmp) / db_name)
            opened.append(db)
            metrics = Metrics()
            sink: list[ev.Event] = []
            guard = make_guard(port, db, journal, clock, default_policy(), metrics,  # type: ignore[arg-type]
                               sink)
            await guard.load()
            return Rig(clock, exchange, HandApi(exchange), venue, db, journal, guard, metrics,
                       sink, port)

        for seed in range(seeds):
            ending = await one_seed(seed, factory)
            outcomes[ending] = outcomes.get(ending, 0) + 1
        for db in opened:
            await db.close()
    return outcomes


async def main(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"latency_s": LATENCY, "cpus": os.cpu_count(),
                               "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, attached, limit in (("unattached", False, False), ("attached", True, False),
                                      ("limit", False, True)):
            result = await run_mode(Path(tmp), name, attached=attached, entries=args.entries,
                                    concurrency=args.concurrency, limit=limit)
            figures[name] = result
            print(f"{name}: {result['protected']}/{result['entries']} protected; fill -> stop "
                  f"p50 {result['fill_to_stop_p50_s']} s, p99 {result['fill_to_stop_p99_s']} s "
                  f"(journaled p99 {result['journaled_ttp_p99_s']} s)", file=sys.stderr)
    if args.chaos:
        started = time.monotonic()
        figures["chaos"] = {"seeds": args.chaos, "endings": await chaos(args.chaos),
                            "wall_s": round(time.monotonic() - started, 1)}
        print(f"chaos: {figures['chaos']}", file=sys.stderr)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--chaos", type=int, default=0, help="seeds of the randomized test")
    run_bench(main, parser.parse_args())
