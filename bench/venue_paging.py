"""Venue calls and request weight per reconcile snapshot from each dialect's real paging
(issue #16 item 8).

`CcxtVenue.snapshot()` runs through the real ccxt classes (Binance USD-M `binanceusdm`, Bybit
`bybit` linear, Bitget `bitget` USDT-M) with HTTP intercepted at `fetch`
(`tests/venues/conftest.py`), answering with venue-shaped JSON for a book of N long positions,
each with a resting stop, paged the way each venue pages (`tests/venues/book.py`: Bybit 200
positions / 50 orders a page by cursor, Bitget 100 plan orders a page by id, Binance one answer
each). Our request budget runs as deployed (`enableRateLimit`, the dialect's limits, real
time), so a snapshot that outgrows the budget waits, and that wait is in its wall time (each
measured snapshot starts on a fresh window, as one every `guard.interval` does).

Per venue and book size (1 / 100 / 500 / 2,000): HTTP requests per snapshot, request weight in
ccxt cost units (what our budget charges; Binance's own header weight differs, see
docs/BENCHMARKS.md), wall and CPU time per snapshot, and a check that every position and every
stop was seen. Human-readable lines first; the last line is one JSON object.
Run: `.venv/bin/python bench/venue_paging.py` (options: --sizes, --snapshots).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.clock import SystemClock
from engine.domain.reports import VenueSnapshot
from tests.venues.book import Book, client_id, serve, symbols
from tests.venues.conftest import VENUES, build

Measure = Callable[[str, int], Awaitable[dict[str, Any]]]


def saw_everything(snapshot: VenueSnapshot, size: int) -> bool:
    """Every position and every stop of a book of `size` is in the snapshot."""
    return (sorted(p.symbol for p in snapshot.positions) == symbols(size)
            and sorted(o.client_id for o in snapshot.orders) == [client_id(i) for i in range(size)])


def books(figures: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(venue, one book size's figures) from `figures["venues"][venue][size]`, in order."""
    for venue, rows in figures["venues"].items():
        for row in rows.values():
            yield venue, row


async def per_venue(measure: Measure, sizes: list[int], figures: dict[str, Any]) -> None:
    """`figures["venues"][venue][size]` for each venue and book size, and whether every stop
    was seen in all of them."""
    figures["venues"] = {venue: {str(n): await measure(venue, n) for n in sizes}
                         for venue in VENUES}
    figures["every_stop_seen"] = all(f["every_stop_seen"] for _, f in books(figures))


def book_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,500,2000")
    parser.add_argument("--snapshots", type=int, default=3)
    return parser


async def measure(venue: str, size: int, snapshots: int) -> dict[str, Any]:
    harness = await build(venue, start=False, rate_limit=True, clock=SystemClock())
    serve(harness, Book(venue, size))
    await harness.venue.start()
    await harness.venue.snapshot()  # warm: ccxt's lazy look-ups, the budget's first window
    calls, weights, walls, cpus = [], [], [], []
    complete = True
    window = harness.venue._dialect.budget.window
    for _ in range(snapshots):
        if window <= 2:  # a fresh budget window, as a snapshot every interval finds it
            await asyncio.sleep(window)
        mark = harness.mark()
        wall, cpu = time.perf_counter(), time.process_time()
        snapshot = await harness.venue.snapshot()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        calls.append(len(harness.since(mark)))
        weights.append(snapshot.weight)
        assert snapshot.calls == calls[-1], "the snapshot's own count disagrees with the wire"
        complete &= saw_everything(snapshot, size)
    await harness.venue.close()
    return {"positions": size, "calls": int(statistics.median(calls)),
            "weight": statistics.median(weights),
            "wall_ms": round(statistics.median(walls) * 1e3, 1),
            "cpu_ms": round(statistics.median(cpus) * 1e3, 1), "every_stop_seen": complete}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(n) for n in args.sizes.split(",")]
    figures: dict[str, Any] = {"bench": "venue_paging", "cores": os.cpu_count(),
                               "python": platform.python_version()}
    await per_venue(lambda venue, n: measure(venue, n, args.snapshots), sizes, figures)
    return figures


def parse() -> argparse.Namespace:
    return book_parser(__doc__).parse_args()


if __name__ == "__main__":
    figures = asyncio.run(main(parse()))
    for venue, f in books(figures):
        print(f"{venue:8s} {f['positions']:5d} positions: {f['calls']:3d} requests, "
              f"weight {f['weight']:g}, {f['wall_ms']} ms wall, {f['cpu_ms']} ms CPU, "
              f"every stop seen: {f['every_stop_seen']}")
    print(json.dumps(figures, sort_keys=True))
