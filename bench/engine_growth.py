"""Whole-engine memory and database growth per open/close cycle, retention on (issue #16).

Not the simulated exchange alone (`bench/sim_exchange.py`): the engine as `Engine.build` composes
it for a paper account (guard, supervisors made and dropped per position, order gateway, view,
exit book, group-commit journal and repositories in SQLite files, the simulated exchange with
its own store), on a virtual clock (`ManualClock`) so 100,000 cycles take minutes, not days.
Journal retention is on (`journal.retention_days = 1`): the archive job runs every virtual day.

A cycle: the hand opens a position on one of `--symbols` markets, a reconcile pass adopts it and
places its stop, the hand closes it, a pass records the close and retires the supervisor.
`--batch` positions go through each step together; each batch moves the clock `--step` seconds.
After `--warmup` cycles (history bounds filled, the first archive done), RSS (after
`gc.collect()`) and the database's pages in use are read, then again after
`--cycles` more: growth per 100,000 cycles and per cycle. Also printed: what the engine still
holds per symbol and per order at the end (supervisors, view entries, writer locks...), which
must stay bounded by the market count, not the cycle count.

Human-readable lines first; the last line is one JSON object.
Run: `.venv/bin/python bench/engine_growth.py` (options: --cycles, --warmup, --batch,
--symbols, --step).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from contextlib import redirect_stderr
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from composed import symbols, widen

from engine.clock import ManualClock
from engine.domain.values import PositionSide
from engine.sim.exchange import HandApi
from storage.retention import JournalRetention
from vigil.logs import setup_logging
from vigil.runtime import Engine
from vigil.settings import load_settings

ACCOUNT = "paper"


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


class Driver:
    def __init__(self, engine: Engine, clock: ManualClock, names: list[str], batch: int,
                 step: float) -> None:
        self.engine, self.clock, self.names = engine, clock, names
        self.batch, self.step = batch, step
        self.guard = engine.guards[ACCOUNT]
        self.hand = HandApi(engine.sims[ACCOUNT])
        self.cycles = 0
        self.progress = time.perf_counter()
        self.next_archive = clock.now()

    async def run(self, cycles: int) -> None:
        done = 0
        while done < cycles:
            batch = self.names[:min(self.batch, cycles - done)]
            for symbol in batch:
                self.hand.open(symbol, PositionSide.LONG, Decimal("1"))
            report = await self.guard.reconcile_now()
            assert not report.unprotected_after, "a position was left without a stop"
            for symbol in batch:
                self.hand.close(symbol)
            await self.guard.reconcile_now()
            assert not self.guard.supervisors, "a supervisor outlived its position"
            # Queued subscribers (the entry gates' stop-out streaks, SQL per close) catch up, as
            # they do live between cycles; flat out on a virtual clock they would fall behind.
            await self.engine.bus.stop()
            done += len(batch)
            self.cycles += len(batch)
            if self.progress and self.cycles % 10_000 == 0:
                print(f"{self.cycles} cycles, {time.perf_counter() - self.progress:.0f} s",
                      file=sys.stdout, flush=True)
            await self.clock.advance(self.step)
            if self.clock.now() >= self.next_archive:  # the daily job, on the virtual clock
                await self.engine.journal.flush()
                assert self.engine.retention is not None
                await self.engine.retention.archive_now()
                self.next_archive = self.clock.now() + timedelta(days=1)

    async def db_bytes(self) -> int:
        """Pages in use (the file less its free list): what the rows take, whether or not the
        WAL has been checkpointed into the file yet."""
        await self.engine.journal.flush()

        def used(conn: Any) -> int:
            pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                                 for p in ("page_count", "freelist_count", "page_size"))
            return int((pages - free) * size)
        return await self.engine.db.run(used)

    def held(self) -> dict[str, int]:
        """What the engine still holds, per symbol or per order, after the run."""
        guard = self.guard
        view = guard.view
        return {"supervisors": len(guard.supervisors),
                "view_positions": len(view._positions),  # tombstones: one per symbol held
                "view_orders": len(view._orders),
                "view_symbols_indexed": len(view._by_symbol),
                "writer_locks": len(guard.orders._writers),
                "zombie_clock": len(guard.zombies.first_seen),
                "stream_fills": len(guard.stream.fills),
                "tasks": len(guard._tasks),
                "bus_backlog": self.engine.bus.backlog()}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock(datetime(2026, 1, 5, tzinfo=UTC))
        settings = load_settings(
            None, data_dir=Path(tmp), log_level="WARNING",
            sim={"latency_ms": 0, "demo_positions": False},
            journal={"retention_days": 1})
        setup_logging(settings.log_level, settings.data_dir, console_chat=False)
        engine = await Engine.build(settings, clock)
        names = symbols(args.symbols)
        widen(engine.sims[ACCOUNT], args.symbols)
        guard = engine.guards[ACCOUNT]
        await guard.load()
        # Engine.start would also start the guard's loop and the price feed on this clock:
        # the driver runs the passes itself, and the archive job when a virtual day has passed.
        engine.retention = JournalRetention(engine.journal, engine.state, clock, days=1,
                                            directory=settings.journal_archive_dir,
                                            at=settings.journal.archive_time)
        driver = Driver(engine, clock, names, args.batch, args.step)
        started = time.perf_counter()
        await driver.run(args.warmup)
        gc.collect()
        rss0, db0 = rss_bytes(), await driver.db_bytes()
        await driver.run(args.cycles)
        gc.collect()
        rss1, db1 = rss_bytes(), await driver.db_bytes()
        wall = time.perf_counter() - started
        archives = sorted(settings.journal_archive_dir.glob("journal-*.jsonl.gz"))
        archive_bytes = sum(p.stat().st_size for p in archives)
        live_rows = await engine.db.run(
            lambda c: c.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
        held = driver.held()
        await engine.stop()
    per = args.cycles
    return {"bench": "engine_growth", "cores": os.cpu_count(),
            "python": platform.python_version(), "cycles": per, "warmup": args.warmup,
            "batch": args.batch, "symbols": args.symbols, "virtual_days": round(
                (args.warmup + per) / args.batch * args.step / 86400, 1),
            "rss_mb_start": round(rss0 / 2**20, 1), "rss_mb_end": round(rss1 / 2**20, 1),
            "rss_growth_mb_per_100k": round((rss1 - rss0) / 2**20 * 100_000 / per, 2),
            "rss_bytes_per_cycle": round((rss1 - rss0) / per, 1),
            "db_mb_start": round(db0 / 2**20, 2), "db_mb_end": round(db1 / 2**20, 2),
            "db_bytes_per_cycle": round((db1 - db0) / per, 1),
            "archives": len(archives),
            "archive_bytes_per_cycle": round(archive_bytes / (args.warmup + per), 1),
            "journal_live_rows": live_rows, "held": held,
            "cycles_per_s": round((args.warmup + per) / wall), "wall_s": round(wall, 1),
            "targets_met": {"rss_le_10mb_per_100k":
                            (rss1 - rss0) / 2**20 * 100_000 / per <= 10}}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--step", type=float, default=3600.0,
                        help="virtual seconds per batch (default: 24 batches a virtual day)")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse()
    with open(os.devnull, "w") as devnull, redirect_stderr(devnull):
        figures = asyncio.run(main(args))
    print(f"{figures['cycles']} open/close cycles after {figures['warmup']} warm-up, "
          f"{figures['virtual_days']} virtual days: RSS {figures['rss_mb_start']} -> "
          f"{figures['rss_mb_end']} MB ({figures['rss_growth_mb_per_100k']} MB per 100,000), "
          f"database {figures['db_mb_start']} -> {figures['db_mb_end']} MB "
          f"({figures['db_bytes_per_cycle']} B/cycle), archives "
          f"{figures['archive_bytes_per_cycle']} B/cycle, held {figures['held']}")
    print(json.dumps(figures, sort_keys=True))
