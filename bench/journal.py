"""Journal appends per second against raw sqlite3 executemany of the same rows (issue #16).

1. raw: the exact rows the journal wrote (id, at, account, kind, payload, prev_hash, hash) are
   inserted into a fresh database (same migrations, WAL, synchronous=NORMAL) with one
   `executemany` and one commit, by plain `sqlite3` on the calling thread;
2. journal: the same events through `Journal.append` as the runtime builds it (background
   mode: only intents wait for their commit), timed from the first append until `flush()`
   returns, so serialising, hashing the chain and committing are all inside the figure (full
   batches are written on the connection's thread while the loop goes on appending);
3. intents: 100 tasks each appending intents one after another (every append waits for its
   commit), to show concurrent intents sharing commits;
4. retention: the database after the rows, after archiving them all (`Journal.archive`), and
   after as many rows again: with retention the file stops growing (freed pages are reused).

Human-readable lines first; the last line is one JSON object with every figure.
Run: `.venv/bin/python bench/journal.py` (options: --events, --repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.domain import events as ev
from storage.db import Database
from storage.journal import BATCH_SIZE, Journal

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TARGET_RATIO = 0.5


def sample_events(n: int) -> list[ev.Event]:
    """What a protected position journals, over and over: adoption, missing, intent, placed."""
    out: list[ev.Event] = []
    for i in range(n):
        symbol = f"S{i % 1000:04d}/USDT:USDT"
        at = T0 + timedelta(milliseconds=i)
        match i % 4:
            case 0:
                out.append(ev.PositionAdopted(account="bench", at=at, symbol=symbol, side="long",
                                              qty=Decimal("0.500"), entry_price=Decimal("101.25"),
                                              generation=1))
            case 1:
                out.append(ev.StopMissing(account="bench", at=at, symbol=symbol, side="long",
                                          qty=Decimal("0.500")))
            case 2:
                out.append(ev.StopPlaced(account="bench", at=at, symbol=symbol,
                                         order_id=str(i), client_id=f"vgs{i:020d}",
                                         trigger_price=Decimal("99.22"), qty=Decimal("0.500"),
                                         time_to_protect=Decimal("0.081")))
            case _:
                out.append(ev.PositionResized(account="bench", at=at, symbol=symbol,
                                              old_qty=Decimal("0.500"), new_qty=Decimal("0.7")))
    return out


async def journal_run(path: Path, events: list[ev.Event], batch_size: int = BATCH_SIZE
                      ) -> tuple[float, float, int]:
    """(whole time, the part spent writing after the last append, batches)."""
    db = await Database.open(path)
    try:
        # as vigil/runtime.py builds it (linger aside)
        journal = Journal(db, background=True, batch_size=batch_size)
        await journal.append(ev.EngineStarted(account="bench", at=T0, mode="paper"))
        await journal.flush()  # the chain's end is loaded before the clock starts
        start = time.perf_counter()
        for event in events:
            await journal.append(event)
        queued = time.perf_counter()
        await journal.flush()
        end = time.perf_counter()
        assert (await journal.verify()).ok
        return end - start, end - queued, journal.batches - 1
    finally:
        await db.close()


def stored_rows(path: Path) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT id, at, account, kind, payload, prev_hash, hash FROM journal"
                            " WHERE id > 1 ORDER BY id").fetchall()


async def fresh_db(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


def raw_run(path: Path, rows: list[tuple[object, ...]]) -> float:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        start = time.perf_counter()
        conn.executemany("INSERT INTO journal (id, at, account, kind, payload, prev_hash, hash)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.commit()
        return time.perf_counter() - start


async def intents_run(path: Path, tasks: int, per_task: int) -> tuple[float, int]:
    db = await Database.open(path)
    try:
        journal = Journal(db, background=True)
        await journal.append(ev.EngineStarted(account="bench", at=T0, mode="paper"))

        async def supervisor(n: int) -> None:
            for i in range(per_task):
                await journal.append(ev.StopIntent(
                    account="bench", at=T0, symbol=f"S{n:04d}/USDT:USDT", action="place",
                    client_id=f"vgs{n:08d}{i:012d}", trigger_price=Decimal("99.22"),
                    qty=Decimal("0.5")))

        batches = journal.batches
        start = time.perf_counter()
        await asyncio.gather(*(supervisor(n) for n in range(tasks)))
        return time.perf_counter() - start, journal.batches - batches
    finally:
        await db.close()


def file_bytes(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


async def retention_run(path: Path, events: list[ev.Event]) -> dict[str, float]:
    db = await Database.open(path)
    try:
        journal = Journal(db, background=True)
        for event in events:
            await journal.append(event)
        await journal.flush()
        before = file_bytes(path)
        archived = await journal.archive(datetime(9999, 1, 1, tzinfo=UTC), path.parent / "a")
        assert archived.path is not None and archived.rows == len(events)
        for event in events:
            await journal.append(event)
        await journal.flush()
        after = file_bytes(path)
        assert (await journal.verify()).ok
        return {"db_bytes_per_row": round(before / len(events), 1),
                "archive_bytes_per_row": round(archived.path.stat().st_size / len(events), 1),
                "db_growth_bytes_per_row_with_retention": round((after - before) / len(events),
                                                                1)}
    finally:
        await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args()
    events = sample_events(args.events)
    gc.freeze()  # the bench's own 100,000 input events are no garbage for the collector to scan

    journal_s: list[float] = []
    write_s: list[float] = []
    raw_s: list[float] = []
    batches = 0
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            jpath, rpath = Path(tmp, f"j{run}.sqlite3"), Path(tmp, f"r{run}.sqlite3")
            elapsed, writing, batches = await journal_run(jpath, events, args.batch_size)
            journal_s.append(elapsed)
            write_s.append(writing)
            rows = stored_rows(jpath)
            await fresh_db(rpath)
            raw_s.append(raw_run(rpath, rows))
        intents_s, intent_batches = await intents_run(Path(tmp, "i.sqlite3"), 100, 20)
        retention = await retention_run(Path(tmp, "retention", "r.sqlite3"), events)

    journal_rate = args.events / statistics.median(journal_s)
    raw_rate = args.events / statistics.median(raw_s)
    ratio = journal_rate / raw_rate
    intents_rate = 2000 / intents_s
    append_us = (statistics.median(journal_s) - statistics.median(write_s)) / args.events * 1e6
    write_ms = statistics.median(write_s) * 1e3  # what the writer had not done by then
    print(f"{args.events} events, median of {args.repeat} runs; {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    print(f"raw sqlite3 executemany of the same rows: {raw_rate:,.0f} rows/s")
    print(f"Journal.append (background) + flush:      {journal_rate:,.0f} appends/s "
          f"in {batches} batches = {ratio:.0%} of raw (target >= {TARGET_RATIO:.0%})")
    print(f"  of which: {append_us:.1f} us per append on the event loop (row text, chain hash, "
          f"full batches handed to the writer thread), then {write_ms:.1f} ms left to commit "
          f"after the last append")
    print(f"intents, 100 tasks x 20 each waiting for its commit: {intents_rate:,.0f}/s "
          f"in {intent_batches} commits")
    print(f"retention: {retention['db_bytes_per_row']} bytes per row in the database, "
          f"{retention['archive_bytes_per_row']} in the gzip archive; growth per row written "
          f"after archiving: {retention['db_growth_bytes_per_row_with_retention']} bytes")
    print(json.dumps({**retention,
        "events": args.events, "repeat": args.repeat, "batch_size": args.batch_size,
        "cores": os.cpu_count(),
        "raw_rows_per_s": round(raw_rate), "journal_appends_per_s": round(journal_rate),
        "ratio": round(ratio, 3), "journal_batches": batches,
        "append_us_on_loop": round(append_us, 2), "write_after_last_append_ms": round(write_ms, 2),
        "intents_per_s_100_tasks": round(intents_rate), "intent_commits": intent_batches,
        "targets_met": {"journal_ge_50pct_of_raw": ratio >= TARGET_RATIO},
    }, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
