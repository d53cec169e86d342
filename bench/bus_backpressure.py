"""A burst of alert-worthy events through the runtime's bus into a slower notifier (issue 16
item 2 follow-up): the queued subscriber's backlog with and without back-pressure.

As `Engine.build` and `Runtime.start` wire it: a group-commit journal in the background mode
(2 ms linger), an `EventBus` that queues its subscribers, and a real `Notifier` (aiogram `Bot`
built, never sending) writing every event's alert for `--chats` chats to the outbox in the same
SQLite file, each batch once the journal has committed it, with its checkpoint. One task
publishes `--events` `StopPlaced` events as fast as it can (each alert distinct: nothing
coalesces); the notifier renders and writes ~4,000 alerts a second for 3 chats, slower than
the publisher. Figures: the largest backlog seen, how many publishes waited, publish and drain
times, the process's peak RSS, and a check that every event has its alert for every chat (none
dropped) and the checkpoint is the journal's end. `--high-water 0`: no bound (as before).

Human-readable lines first; the last line is one JSON object.
Run: `.venv/bin/python bench/bus_backpressure.py` (options: --events, --chats, --high-water).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from contextlib import redirect_stderr
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiogram import Bot

from bot.i18n import build_i18n
from bot.notifier import Notifier
from bot.roles import RoleBook
from engine.bus import HIGH_WATER, EventBus
from engine.clock import ManualClock
from engine.domain import events as ev
from storage.db import Database
from storage.journal import Journal
from storage.outbox import OutboxRepo
from storage.repositories import StateRepo


def alert(i: int) -> ev.Event:
    return ev.StopPlaced(account="bench", symbol=f"S{i:06d}/USDT:USDT", order_id=str(i),
                         client_id=f"c{i}", trigger_price=Decimal("99.5"), qty=Decimal("0.5"),
                         time_to_protect=Decimal("0.08"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--chats", type=int, default=3)
    parser.add_argument("--high-water", type=int, default=HIGH_WATER)
    args = parser.parse_args()
    high = args.high_water or 10**12  # 0: no bound
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database.open(Path(tmp, "b.sqlite3"))
        try:
            journal = Journal(db, background=True, linger=0.002)
            bus = EventBus(journal.append, queue_subscribers=True, high_water=high,
                           low_water=high // 2)
            chats = tuple(1000 + n for n in range(args.chats))
            notifier = Notifier(Bot("123456:bench"), chats=chats, roles=RoleBook(admins=chats),
                                i18n=build_i18n(), state=StateRepo(db), clock=ManualClock(),
                                outbox=OutboxRepo(db), journal=journal)
            bus.subscribe(notifier.on_event, batch=notifier.on_published)
            events = [alert(i) for i in range(args.events)]
            peak = 0
            start = time.perf_counter()
            for event in events:
                await bus.publish(event)
                peak = max(peak, bus.backlog())
            published = time.perf_counter() - start
            await bus.stop()
            drained = time.perf_counter() - start
            await journal.flush()
            rows = (await db.conn.execute_fetchall("SELECT COUNT(*) FROM outbox"))[0][0]
            last = (await db.conn.execute_fetchall("SELECT MAX(id) FROM journal"))[0][0]
            checkpoint = await notifier.outbox.journal_checkpoint()
        finally:
            await db.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert rows == args.events * args.chats, rows  # nothing dropped
    assert checkpoint == last, (checkpoint, last)
    bound = "none" if not args.high_water else f"{high:,} (resume below {high // 2:,})"
    print(f"{args.events:,} events, {args.chats} chats, high-water {bound}: backlog peak "
          f"{peak:,}, {bus.waits:,} publishes waited; published in {published:.1f} s, drained "
          f"in {drained:.1f} s; peak RSS {rss_mb:.0f} MB; {rows:,} alerts, checkpoint {last}")
    print(json.dumps({"events": args.events, "chats": args.chats,
                      "high_water": args.high_water or None, "backlog_peak": peak,
                      "publish_waits": bus.waits, "publish_s": round(published, 2),
                      "drain_s": round(drained, 2), "peak_rss_mb": round(rss_mb),
                      "alerts": rows, "checkpoint_is_journal_end": checkpoint == last},
                     sort_keys=True))


if __name__ == "__main__":
    with open("/dev/null", "w") as quiet, redirect_stderr(quiet):  # loguru: one line per event
        asyncio.run(main())
