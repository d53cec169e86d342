"""SQL statements per alert in the notifier's enqueue path (issue #16 item 2).

A real `Notifier` (aiogram `Bot` built, never sending: only the enqueue path runs) over a real
SQLite file renders engine events for `--chats` alert chats (one with a /lang choice, the others
without) and writes them to the outbox. The events are journaled first and reach the notifier
as the runtime's bus hands them over (`on_published`, each with its journal sequence, which the
same transaction records as the checkpoint). Every statement SQLite runs on the shared
connection while the notifier works is counted with sqlite3's `set_trace_callback` (BEGIN and
COMMIT included; the journal's own writes are done before); the first alert pays the language
look-ups, so steady state is the figure that matters. Last, a batch with nothing to say
(an intent) is counted: it moves the checkpoint only.

Human-readable lines first; the last line is one JSON object.
Run: `.venv/bin/python bench/notifier_sql.py` (options: --chats, --alerts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiogram import Bot

from bot.i18n import build_i18n
from bot.notifier import Notifier
from bot.roles import RoleBook
from engine.bus import Published
from engine.clock import ManualClock
from engine.domain import events as ev
from storage.db import Database
from storage.journal import Journal
from storage.outbox import OutboxRepo
from storage.repositories import StateRepo


def alert(i: int) -> ev.Event:
    return ev.StopPlaced(account="bench", symbol=f"S{i:04d}/USDT:USDT", order_id=str(i),
                         client_id=f"c{i}", trigger_price=Decimal("99.5"), qty=Decimal("0.5"),
                         time_to_protect=Decimal("0.08"))


def quiet() -> ev.Event:
    return ev.StopIntent(account="bench", symbol="S/USDT:USDT", action=ev.StopAction.PLACE,
                         client_id="q", trigger_price=Decimal("99.5"), qty=Decimal("0.5"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=3)
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database.open(Path(tmp, "n.sqlite3"))
        try:
            state = StateRepo(db)
            chats = tuple(1000 + n for n in range(args.chats))
            await state.put("lang", str(chats[0]), "ru")
            journal = Journal(db)
            notifier = Notifier(Bot("123456:bench"), chats=chats, roles=RoleBook(admins=chats),
                                i18n=build_i18n(), state=state, clock=ManualClock(),
                                outbox=OutboxRepo(db), journal=journal)
            published = []
            for event in [alert(i) for i in range(args.alerts + 1)] + [quiet()]:
                published.append(Published(await journal.append(event), event))
            seen: list[str] = []
            await db.run(lambda conn: conn.set_trace_callback(seen.append))
            await notifier.on_published(published[:1])  # the first alert: language look-ups
            first = len(seen)
            seen.clear()
            start = time.perf_counter()
            for one in published[1:-1]:
                await notifier.on_published([one])
            elapsed = time.perf_counter() - start
            per_alert = len(seen) / args.alerts
            kinds = Counter(s.split()[0].upper() for s in seen)
            seen.clear()
            await notifier.on_published(published[-1:])
            quiet_statements = len(seen)
            await db.run(lambda conn: conn.set_trace_callback(None))
            checkpoint = await notifier.outbox.journal_checkpoint()
            rows = (await db.conn.execute_fetchall("SELECT COUNT(*) FROM outbox"))[0][0]
        finally:
            await db.close()
    assert rows == (args.alerts + 1) * args.chats, rows
    assert checkpoint == published[-1].seq, checkpoint
    print(f"{args.chats} chats, {args.alerts} alerts: {per_alert:.1f} SQL statements per alert "
          f"({dict(kinds)}); first alert {first}; {args.alerts / elapsed:,.0f} alerts/s; "
          f"a batch with nothing to say: {quiet_statements}")
    print(json.dumps({"chats": args.chats, "alerts": args.alerts,
                      "statements_per_alert": round(per_alert, 2),
                      "statements_first_alert": first, "by_kind": dict(kinds),
                      "statements_nothing_to_say": quiet_statements,
                      "alerts_per_s": round(args.alerts / elapsed)}, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
