"""The composed runtime at 1 / 100 / 500 / 2,000 positions on a real venue dialect (issue #16).

`bench/composed.py` runs `vigil.runtime.Runtime` on the paper exchange; this runs the same
composition on the real ccxt classes (Binance USD-M `binanceusdm`, Bybit `bybit` linear, Bitget
`bitget` USDT-M): one live account (API keys stored in the key store as `vigil keys add` stores
them, testnet off), the notifier over real HTTP to the fake Bot API, logging as deployed. Built
by `Engine.build` as `vigil run` builds it, so ccxt's rate limiter carries our request budget
as deployed (not switched off: a snapshot that outgrows the budget waits, and the wait is in
its wall time). Before the engine starts, the account's ccxt exchange has its HTTP intercepted
at `fetch` (`tests/venues/conftest.py` `intercept`), answering after `--latency-ms` (50 ms)
with venue-shaped pages for a book of N long positions, each already with its resting stop,
paged as the venue pages them (`tests/venues/book.py`); the websockets are a watcher with
nothing to say (REST snapshots carry protection, as when the stream is quiet).

Per dialect and book size: the first cycle (start-up check, then adopting every position and
its stop) wall time and event-loop lag max (a 5 ms ticker's overshoot, and "busy": the loop
thread's own CPU in the late tick); then `guard.reconcile_now()` cycles: wall, whole-process
CPU, loop lag max (busy) and HTTP requests per cycle. Checked: every position adopted with its
stop, no order sent (no POST / PUT / DELETE), no StopMissing.

Human-readable lines first; the last line is one JSON object with every figure.
Run: `.venv/bin/python bench/composed_venue.py` (options: --venues, --sizes, --cycles,
--latency-ms, --profile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.composed import Composed, LagMeter, pct, wait_until
from bench.venue_paging import books
from engine.domain import events as ev
from engine.venues import CcxtVenue
from storage.db import Database
from storage.secrets import ApiCredentials, KeyStore
from tests.venues import payloads as p
from tests.venues.book import Book, route_book, symbols
from tests.venues.conftest import CREDENTIALS, FakeWatcher, Recorder, intercept
from vigil.runtime import Engine
from vigil.settings import Settings, load_settings

ACCOUNT = "live"
# the setting's name -> the book's (and the test fakes') name of the venue
DIALECTS = {"binanceusdm": "binance", "bybit": "bybit", "bitget": "bitget"}
WRITES = ("POST", "PUT", "DELETE")  # every venue's order placement, amendment and cancel


def no_movements(http: Recorder, venue: str) -> None:
    """The account's ledger (what the ledger sync reads at start): nothing happened."""
    if venue == "binance":
        http.route("GET", "/fapi/v1/income", [])
    elif venue == "bybit":
        http.route("GET", "/v5/account/transaction-log",
                   p.bybit_ok({"list": [], "nextPageCursor": ""}))
    else:
        http.route("GET", "/api/v2/mix/account/bill", p.bitget_ok({"bills": [], "endId": None}))


@dataclass
class Seen:
    """The engine's word on the book, from the bus (inline, so counted as published)."""

    adopted: set[str] = field(default_factory=set)
    stops: set[str] = field(default_factory=set)  # symbols whose stop was adopted or placed
    adopted_stops: int = 0
    placed: list[float] = field(default_factory=list)  # time-to-protect of each stop we placed
    missing: list[str] = field(default_factory=list)
    intents: int = 0
    done_at: float = 0.0  # perf_counter when the last of `size` positions had its stop
    size: int = 0

    async def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.PositionAdopted):
            self.adopted.add(event.symbol)
        elif isinstance(event, ev.StopAdopted):
            self.stops.add(event.symbol)
            self.adopted_stops += 1
        elif isinstance(event, ev.StopPlaced):
            self.stops.add(event.symbol)
            self.placed.append(float(event.time_to_protect or 0))
        elif isinstance(event, ev.StopMissing):
            self.missing.append(event.symbol)
        elif isinstance(event, (ev.StopIntent, ev.CloseIntent, ev.CancelIntent)):
            self.intents += 1
        if not self.done_at and self.complete():
            self.done_at = time.perf_counter()

    def complete(self) -> bool:
        return len(self.adopted) == len(self.stops) == self.size


class ComposedVenue(Composed):
    """The runtime with one account on a real ccxt dialect whose HTTP is the book."""

    def __init__(self, workdir: Path, latency_ms: int, dialect: str, size: int,
                 profile: WorstTurns | None = None, protected: bool = True) -> None:
        super().__init__(workdir, latency_ms)
        self.profile, self.protected = profile, protected
        self.dialect, self.venue, self.size = dialect, DIALECTS[dialect], size
        self.http: Recorder | None = None
        self.ccxt: CcxtVenue | None = None
        self.seen = Seen(size=size)
        self.lag = LagMeter()
        self.started = self.checked = 0.0
        self.startup_lag = (0.0, 0.0)  # the start-up check's (lag max, busy max)

    def settings(self, **overrides: Any) -> Settings:
        return super().settings(accounts=[{"name": ACCOUNT, "venue": self.dialect,
                                           "testnet": False}])

    async def __aenter__(self) -> Any:
        await store_keys(load_settings(None, data_dir=self.workdir), self.venue)
        return await super().__aenter__()

    def prepare(self, engine: Engine) -> None:
        venue = engine.venues[ACCOUNT]
        assert isinstance(venue, CcxtVenue), f"{ACCOUNT} was built as {type(venue).__name__}"
        self.ccxt, self.http = venue, intercept(venue.exchange, self.venue)
        route_book(self.http, Book(self.venue, self.size, self.protected))
        no_movements(self.http, self.venue)
        self.http.latency = self.latency_ms / 1000
        venue._streams._watcher = FakeWatcher()  # connected, nothing to say; never the network
        engine.bus.subscribe(self.seen, queued=False)
        check = venue.start

        async def start() -> None:  # the start-up check (markets, account mode) on its own
            await check()
            self.startup_lag = await self.lag.stop()
            self.checked = time.perf_counter()
            self.lag.start()

        venue.start = start  # type: ignore[method-assign]
        if self.profile is not None:
            self.profile.armed = True
        self.started = time.perf_counter()  # the engine starts now: the first cycle begins
        self.lag.start()

    def writes(self) -> list[str]:
        assert self.http is not None
        return [f"{r.method} {r.path}" for r in self.http.requests if r.method in WRITES]


async def store_keys(settings: Settings, venue: str) -> None:
    """As `vigil keys add` stores them: encrypted in the engine's database."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.open(settings.db_path)
    try:
        keys = KeyStore(db.conn, KeyStore.load_master_key(settings.data_dir, os.environ))
        await keys.put(ACCOUNT, ApiCredentials.of(*CREDENTIALS[venue]))
    finally:
        await db.close()


class WorstTurns:
    """cProfile (loop-thread CPU) of the loop's slowest turns: one turn is one pass of
    `BaseEventLoop._run_once`, every callback ready at once, since a 5 ms ticker waits for the
    whole pass (2,000 tasks resumed together are 2,000 small callbacks in one turn). The
    profile of a turn is kept only when it is among the `keep` slowest."""

    def __init__(self, keep: int = 5) -> None:
        self.keep = keep
        self.turns: list[tuple[float, pstats.Stats]] = []
        self.armed = False  # from the engine's start: the runtime's imports are not the cycle
        self._run_once = asyncio.base_events.BaseEventLoop._run_once  # type: ignore[attr-defined]

    def __enter__(self) -> WorstTurns:
        run_once, worst = self._run_once, self

        def profiled(loop: asyncio.AbstractEventLoop) -> None:
            if not worst.armed:
                return run_once(loop)
            profile = cProfile.Profile(time.thread_time)
            started = time.thread_time()
            profile.enable()
            try:
                run_once(loop)
            finally:
                profile.disable()
                worst.note(time.thread_time() - started, profile)

        asyncio.base_events.BaseEventLoop._run_once = profiled  # type: ignore[attr-defined]
        return self

    def note(self, spent: float, profile: cProfile.Profile) -> None:
        if len(self.turns) < self.keep or spent > self.turns[-1][0]:
            self.turns.append((spent, pstats.Stats(profile)))
            self.turns.sort(key=lambda t: -t[0])
            del self.turns[self.keep:]

    def __exit__(self, *_exc: object) -> None:
        asyncio.base_events.BaseEventLoop._run_once = self._run_once  # type: ignore[attr-defined]

    def report(self, lines: int = 12) -> str:
        out = io.StringIO()
        for spent, stats in self.turns:
            out.write(f"--- a turn of {spent * 1e3:.1f} ms loop-thread CPU\n")
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats("tottime").print_stats(lines)
        return out.getvalue()


async def run_book(workdir: Path, dialect: str, size: int, *, cycles: int, latency_ms: int,
                   profile: WorstTurns | None = None, protected: bool = True) -> dict[str, Any]:
    """`protected` False: the book's stops are missing; the engine places them, the first
    cycle ends once every one is placed, and the steady cycles follow."""
    composed = ComposedVenue(workdir, latency_ms, dialect, size, profile, protected)
    seen = composed.seen
    async with composed as runtime:
        assert runtime.engine is not None and composed.http and composed.ccxt
        http, budget = composed.http, composed.ccxt.budget
        guard = runtime.engine.guards[ACCOUNT]
        await wait_until(seen.complete, 120 + size / (10 if protected else 2))
        first_lag, first_busy = await composed.lag.stop()
        first_s, adopt_s = seen.done_at - composed.started, seen.done_at - composed.checked
        first_requests, first_orders = len(http.requests), len(composed.writes())
        await runtime.engine.journal.flush()
        walls, cpus, lags, busy, requests, calls, waits = [], [], [], [], [], [], []
        for _ in range(cycles):
            composed.lag.start()
            mark, waited = len(http.requests), budget.stats().read_wait_total
            wall, cpu = time.perf_counter(), time.process_time()
            report = await guard.reconcile_now()
            await runtime.engine.journal.flush()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            worst, worst_busy = await composed.lag.stop()
            lags.append(worst)
            busy.append(worst_busy)
            requests.append(len(http.requests) - mark)
            calls.append(report.venue_calls)
            waits.append(budget.stats().read_wait_total - waited)
            assert not report.unprotected_after, report.unprotected_after
        status = guard.status()
        views = guard.positions()
        alerts = len(composed.api.sent("sendMessage"))
        assert runtime.notifier is not None  # shutdown is not measured: alerts Telegram's
        runtime.notifier.shutdown_timeout = 0.0  # pacing holds stay in the outbox at once
    protected = sorted(v.symbol for v in views if v.stop_price is not None)
    return {
        "positions": size, "first_cycle_s": round(first_s, 2),
        # the start-up check (ccxt's load_markets: the book's markets and the venue's own) ...
        "startup_lag_max_ms": round(composed.startup_lag[0] * 1e3, 1),
        "startup_busy_max_ms": round(composed.startup_lag[1] * 1e3, 1),
        # ... and the rest of the first cycle: the first snapshot, every position adopted
        "adopt_s": round(adopt_s, 2), "adopt_lag_max_ms": round(first_lag * 1e3, 1),
        "adopt_busy_max_ms": round(first_busy * 1e3, 1),
        "first_cycle_lag_max_ms": round(max(first_lag, composed.startup_lag[0]) * 1e3, 1),
        "first_cycle_busy_max_ms": round(max(first_busy, composed.startup_lag[1]) * 1e3, 1),
        "first_cycle_requests": first_requests,
        "cycle_wall_ms": round(statistics.median(walls) * 1e3, 1),
        "cycle_cpu_ms": round(statistics.median(cpus) * 1e3, 1),
        "cycle_lag_max_ms": round(max(lags) * 1e3, 1),
        "cycle_busy_max_ms": round(max(busy) * 1e3, 1),
        "cycle_requests": int(statistics.median(requests)),
        "cycle_venue_calls": int(statistics.median(calls)),
        # seconds our requests waited for the budget (the two listings' waits added up)
        "cycle_budget_wait_s": round(statistics.median(waits), 2),
        "snapshot_weight": budget.stats().snapshot_weight,
        "adopted": len(seen.adopted), "stops_adopted": seen.adopted_stops,
        "stops_placed": len(seen.placed),
        "ttp_p50_s": round(pct(seen.placed, 0.5), 2) if seen.placed else None,
        "ttp_max_s": round(max(seen.placed), 2) if seen.placed else None,
        "every_position_protected": (protected == symbols(size) and status.unprotected == 0
                                     and status.positions == size),
        "stop_missing": len(seen.missing), "intents": seen.intents,
        "orders_sent": len(composed.writes()), "alerts_sent": alerts,
        "orders_after_first_cycle": len(composed.writes()) - first_orders,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(n) for n in args.sizes.split(",")]
    dialects = args.venues.split(",")
    figures: dict[str, Any] = {"bench": "composed_venue", "cores": os.cpu_count(),
                               "latency_ms": args.latency_ms, "cycles": args.cycles,
                               "python": platform.python_version(), "venues": {},
                               "stops_missing_at_start": args.missing}
    profile = WorstTurns() if args.profile else None
    with tempfile.TemporaryDirectory() as tmp:
        for dialect in dialects:
            rows = figures["venues"][dialect] = {}
            for n in sizes:
                watch = profile if n == max(sizes) else None
                with watch or nullcontext():
                    rows[str(n)] = await run_book(Path(tmp, f"{dialect}{n}"), dialect, n,
                                                  cycles=args.cycles, latency_ms=args.latency_ms,
                                                  profile=watch, protected=not args.missing)
    every = [f for _, f in books(figures)]
    figures["every_position_protected"] = all(f["every_position_protected"] for f in every)
    figures["orders_sent"] = sum(f["orders_sent"] for f in every)
    figures["stop_missing"] = sum(f["stop_missing"] for f in every)
    largest = str(max(sizes))
    figures["targets_met"] = {
        dialect: {"steady_cycle_lag_le_50ms": rows[largest]["cycle_lag_max_ms"] <= 50,
                  "first_cycle_lag_le_100ms": rows[largest]["first_cycle_lag_max_ms"] <= 100}
        for dialect, rows in figures["venues"].items()}
    if profile is not None:
        figures["profile"] = profile.report()
    return figures


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venues", default=",".join(DIALECTS))
    parser.add_argument("--sizes", default="1,100,500,2000")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--missing", action="store_true",
                        help="the book's stops are missing: the engine places every one")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile of the worst loop turns at the largest size (stderr)")
    return parser.parse_args()


def show(figures: dict[str, Any]) -> None:
    for dialect, f in books(figures):
        print(f"{dialect:11s} {f['positions']:5d} positions: first cycle {f['first_cycle_s']}"
              f" s (start-up check lag max {f['startup_lag_max_ms']} ms, busy "
              f"{f['startup_busy_max_ms']}; adopting {f['adopt_s']} s, lag max "
              f"{f['adopt_lag_max_ms']} ms, busy {f['adopt_busy_max_ms']}; "
              f"{f['first_cycle_requests']} requests); "
              f"steady cycle {f['cycle_wall_ms']} ms wall, {f['cycle_cpu_ms']} ms CPU, "
              f"lag max {f['cycle_lag_max_ms']} ms (busy {f['cycle_busy_max_ms']}), "
              f"{f['cycle_requests']} requests (weight {f['snapshot_weight']:g}, budget "
              f"waits {f['cycle_budget_wait_s']} s); "
              f"protected: {f['every_position_protected']}, orders sent {f['orders_sent']}, "
              f"StopMissing {f['stop_missing']}")


if __name__ == "__main__":
    args = parse()
    with open(os.devnull, "w") as devnull, redirect_stderr(devnull):  # the INFO log on stderr
        figures = asyncio.run(main(args))
    if "profile" in figures:
        sys.stderr.write(figures.pop("profile"))
    show(figures)
    print(json.dumps(figures, sort_keys=True))
