"""Event-loop lag while a snapshot of a big book is parsed (issue #16: ccxt parsing off the loop).

`CcxtVenue.snapshot()` runs through the real ccxt classes (Binance USD-M `binanceusdm`, Bybit
`bybit` linear, Bitget `bitget` USDT-M) with HTTP intercepted at `fetch`
(`tests/venues/conftest.py`), answering with venue-shaped JSON for a book of N long positions,
each with a resting stop, paged as each venue pages (`tests/venues/book.py`); each answer comes
in a later turn of the loop, as one off the network does. Our request budget
is off (`enableRateLimit` false): its waits are sleeps that block nothing, and without them every
page arrives back to back, the worst case for parsing on the loop.

While each snapshot runs, a ticker task on the same loop sleeps `--tick` (5 ms) again and again;
how late it wakes is the loop's lag, so its largest overshoot is the longest stretch the loop
could run nothing else. Per venue and book size (1 / 100 / 500 / 2,000): lag max and p99 (over
every tick during the measured snapshots), the ticks the ticker got while a snapshot ran, the
CPU of the loop's own thread and of the whole process per snapshot (they differ when work runs
in other threads), wall time, and a check that every position and every stop was seen. Also
the JSON of the largest single answer at the largest size: what ccxt's `fetch` decodes in one
block (`json.loads`) and what the fake venue spends encoding it (`json.dumps`, a stand-in for
the network that a real venue does not cost us; it is inside the lag figures).

Human-readable lines first; the last line is one JSON object.
`--parse thread` measures the alternative to parsing in turns (each listing parsed in
`asyncio.to_thread`); `--gc-freeze` calls `gc.freeze()` once the venue has started, so that a
full garbage collection no longer traverses what start-up built (without it, one now and then
sets the maximum: docs/BENCHMARKS.md).
Run: `.venv/bin/python bench/venue_parse_lag.py` (options: --sizes, --snapshots, --tick,
--parse, --gc-freeze).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.venue_paging import book_parser, books, per_venue, saw_everything
from engine.clock import SystemClock
from engine.venues import ccxt_venue
from engine.venues.dialects import base
from engine.venues.turns import ROWS_PER_TURN
from tests.venues.book import BITGET_PLAN_ORDERS, BYBIT_ORDERS, BYBIT_POSITIONS, Book, serve
from tests.venues.conftest import VENUES, build


class Ticker:
    """Sleeps `tick` seconds in a loop; how late each wake-up comes is the loop's lag."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.lags: list[float] = []
        self.woke: list[float] = []  # perf_counter of each wake-up
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            due = time.perf_counter() + self.tick
            await asyncio.sleep(self.tick)
            self.woke.append(time.perf_counter())
            self.lags.append(max(0.0, self.woke[-1] - due))

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


class Blocks:
    """The loop thread's CPU in each callback the loop runs (a task's step is one): the longest
    is the longest stretch nothing else could run, and unlike the ticker's wall-clock lag it
    does not count time the OS gave to other processes. Wraps asyncio's Handle._run."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._run = asyncio.events.Handle._run

    def __enter__(self) -> Blocks:
        run, blocks = self._run, self

        def timed(handle: asyncio.Handle) -> None:
            started = time.thread_time()
            try:
                run(handle)
            finally:
                blocks.longest = max(blocks.longest, time.thread_time() - started)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.events.Handle._run = self._run  # type: ignore[method-assign]


class Collections:
    """Garbage-collector pauses (a full collection of a big heap stops everything)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def __enter__(self) -> Collections:
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._observe)


async def parse_in_a_thread(rows: Sequence[Any], parse: Callable[[Sequence[Any]], Iterable[Any]],
                            per_turn: int = 0) -> list[Any]:
    """The alternative to `in_turns` measured here: the whole listing in asyncio.to_thread."""
    return await asyncio.to_thread(lambda: list(parse(rows)))


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


async def measure(venue: str, size: int, snapshots: int, tick: float,
                  freeze: bool) -> dict[str, Any]:
    harness = await build(venue, start=False, clock=SystemClock())
    harness.http.answer_later = True  # each answer in its own turn of the loop, as off the network
    serve(harness, Book(venue, size))
    await harness.venue.start()
    await harness.venue.snapshot()  # warm: ccxt's lazy look-ups
    if freeze:  # what start-up could do: what exists now is never traversed by the GC again
        gc.collect()
        gc.freeze()
    lags: list[float] = []
    ticks, loop_cpus, cpus, walls = [], [], [], []
    complete = True
    with Blocks() as blocks, Collections() as collections:
        for _ in range(snapshots):
            await asyncio.sleep(tick * 2)  # the ticker's first sleep starts on a quiet loop
            with Ticker(tick) as ticker:
                await asyncio.sleep(0)  # let the ticker start its first sleep
                wall, loop_cpu, cpu = time.perf_counter(), time.thread_time(), time.process_time()
                snapshot = await harness.venue.snapshot()
                ended = time.perf_counter()
                walls.append(ended - wall)
                loop_cpus.append(time.thread_time() - loop_cpu)
                cpus.append(time.process_time() - cpu)
                await asyncio.sleep(tick * 1.5)  # the tick that was due during the snapshot lands
            lags.extend(ticker.lags)
            ticks.append(sum(1 for woke in ticker.woke if woke <= ended))
            complete &= saw_everything(snapshot, size)
    await harness.venue.close()
    if freeze:
        gc.unfreeze()
    full = [pause for generation, pause in collections.pauses if generation == 2]
    return {"positions": size, "lag_max_ms": round(max(lags) * 1e3, 1),
            "lag_p99_ms": round(_p99(lags) * 1e3, 1), "ticks": int(statistics.median(ticks)),
            "block_max_ms": round(blocks.longest * 1e3, 1),
            "gc_full_max_ms": round(max(full, default=0.0) * 1e3, 1),
            "loop_cpu_ms": round(statistics.median(loop_cpus) * 1e3, 1),
            "cpu_ms": round(statistics.median(cpus) * 1e3, 1),
            "wall_ms": round(statistics.median(walls) * 1e3, 1), "every_stop_seen": complete}


def json_costs(venue: str, size: int) -> dict[str, float]:
    """The largest single answer of a snapshot at `size` (a whole listing, or one page where the
    venue pages): encoded by the fake venue, decoded by ccxt's `fetch`."""
    book = Book(venue, size)
    positions, stops = book.positions(), book.stops()
    answers = {"binance": [positions, stops],
               "bybit": [positions[:BYBIT_POSITIONS[0]], stops[:BYBIT_ORDERS[0]]],
               "bitget": [positions, stops[:BITGET_PLAN_ORDERS[0]]]}[venue]
    largest = max(answers, key=lambda rows: len(json.dumps(rows)))
    started = time.perf_counter()
    text = json.dumps(largest)
    encoded = time.perf_counter() - started
    started = time.perf_counter()
    json.loads(text)
    decoded = time.perf_counter() - started
    return {"kib": round(len(text) / 1024), "dumps_ms": round(encoded * 1e3, 1),
            "loads_ms": round(decoded * 1e3, 1)}


async def idle_lag(tick: float, seconds: float = 0.5) -> float:
    with Ticker(tick) as ticker:
        await asyncio.sleep(seconds)
    return round(max(ticker.lags) * 1e3, 2)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(n) for n in args.sizes.split(",")]
    if args.parse == "thread":  # both places that parse a listing in turns
        base.in_turns = ccxt_venue.in_turns = parse_in_a_thread  # type: ignore[assignment]
    figures: dict[str, Any] = {"bench": "venue_parse_lag", "cores": os.cpu_count(),
                               "python": platform.python_version(), "tick_ms": args.tick * 1e3,
                               "parse": args.parse, "gc_freeze": args.gc_freeze,
                               "rows_per_turn": ROWS_PER_TURN,
                               "switch_interval_ms": sys.getswitchinterval() * 1e3,
                               "idle_lag_max_ms": await idle_lag(args.tick)}
    await per_venue(lambda venue, n: measure(venue, n, args.snapshots, args.tick, args.gc_freeze),
                    sizes, figures)
    figures["largest_answer"] = {venue: json_costs(venue, max(sizes)) for venue in VENUES}
    for key in ("lag_max_ms", "block_max_ms"):
        figures[key] = max(f[key] for _, f in books(figures))
    return figures


def parse() -> argparse.Namespace:
    parser = book_parser(__doc__)
    parser.add_argument("--tick", type=float, default=0.005, help="ticker period, seconds")
    parser.add_argument("--parse", choices=("turns", "thread"), default="turns",
                        help="turns: as shipped; thread: each listing in asyncio.to_thread")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() once the venue has started")
    return parser.parse_args()


if __name__ == "__main__":
    figures = asyncio.run(main(parse()))
    print(f"idle loop: lag max {figures['idle_lag_max_ms']} ms at a {figures['tick_ms']:g} ms tick")
    for venue, rows in figures["venues"].items():
        for f in rows.values():
            print(f"{venue:8s} {f['positions']:5d} positions: lag max {f['lag_max_ms']} ms "
                  f"(p99 {f['lag_p99_ms']}, {f['ticks']} ticks), longest block "
                  f"{f['block_max_ms']} ms, full GC {f['gc_full_max_ms']} ms, loop CPU "
                  f"{f['loop_cpu_ms']} ms, CPU {f['cpu_ms']} ms, wall {f['wall_ms']} ms, "
                  f"every stop seen: {f['every_stop_seen']}")
        answer = figures["largest_answer"][venue]
        print(f"{venue:8s} largest answer {answer['kib']} KiB: json.loads {answer['loads_ms']} ms"
              f" (ccxt's fetch, on the loop), json.dumps {answer['dumps_ms']} ms (the fake venue)")
    print(json.dumps(figures, sort_keys=True))
