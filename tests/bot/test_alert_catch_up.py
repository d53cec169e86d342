"""No alert lost in a crash (issue 16 item 2): the outbox records, in the transaction that
writes a batch's alerts, the journal sequence the notifier got to; on start the notifier turns
the journal's events after it into alerts. Real SQLite files, a real Notifier, the real Runtime
over the fake Bot API for the restarts."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from aiogram import Bot

from bot.i18n import build_i18n
from bot.notifier import Notifier
from bot.roles import RoleBook
from engine.bus import EventBus
from engine.clock import Clock, ManualClock, SystemClock
from engine.domain import events as ev
from storage.db import Database, bundled_migrations
from storage.journal import Journal, chain_hash
from storage.outbox import OutboxRepo
from storage.repositories import StateRepo
from tests.bot.conftest import ADMIN, running, telegram_settings
from tests.fakes import FakeBotAPI
from vigil.runtime import Engine

GROUP = -500
ROOT = Path(__file__).resolve().parents[2]


def hold(reason: str) -> ev.HoldSet:
    return ev.HoldSet(account="paper", reason=reason, by="test")


def rows_with(db_path: Path, marker: str) -> list[tuple[int, int]]:
    """(chat, count) of every outbox row whose text has `marker`, as another process sees it."""
    with closing(sqlite3.connect(db_path)) as conn:
        return conn.execute("SELECT chat_id, count FROM outbox WHERE text LIKE ? ORDER BY id",
                            (f"%{marker}%",)).fetchall()


def checkpoint_and_end(db_path: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(db_path)) as conn:
        seen = conn.execute("SELECT MAX((SELECT journal_seq FROM outbox_checkpoint),"
                            " COALESCE((SELECT MAX(journal_seq) FROM outbox), 0))").fetchone()[0]
        end = conn.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()[0]
    return seen, end


def other_writer_appends(db_path: Path, kind: str) -> None:
    """Another connection chains a row on the journal's last one (as another process would)."""
    with closing(sqlite3.connect(db_path)) as other:
        last_id, prev = other.execute(
            "SELECT id, hash FROM journal ORDER BY id DESC LIMIT 1").fetchone()
        at, payload = "2026-01-05T12:00:00.000000Z", '{"account":"paper"}'
        other.execute("INSERT INTO journal VALUES (?, ?, 'paper', ?, ?, ?, ?)",
                      (last_id + 1, at, kind, payload, prev,
                       chain_hash(prev, at, "paper", kind, payload)))
        other.commit()


def notifier_on(db: Database, journal: Journal | None, chats: tuple[int, ...] = (ADMIN,),
                clock: Clock | None = None) -> Notifier:
    """The runtime's notifier (never sending here: only its enqueue path runs)."""
    return Notifier(Bot("123456:catchup"), chats=chats, roles=RoleBook(admins=(ADMIN,)),
                    i18n=build_i18n(), state=StateRepo(db), clock=clock or ManualClock(),
                    outbox=OutboxRepo(db), journal=journal)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "v.db")
    yield database
    await database.close()


async def test_alerts_journaled_before_a_crash_are_written_once_after_it(
        api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    data = tmp_path / "data"
    settings = telegram_settings(api, data)
    # The first process: its notifier writes one alert, then the process dies with events
    # journaled (committed) whose alerts were never written: the notifier's queue is gone.
    # The system clock, as the runtime after it: an alert from a manual clock's 2026-01-05
    # would be dropped as stale there.
    engine = await Engine.build(settings, SystemClock())
    notifier = notifier_on(engine.db, engine.journal, clock=SystemClock())
    unsubscribe = engine.bus.subscribe(notifier.on_event, batch=notifier.on_published)
    assert await notifier.catch_up() == 0
    await engine.bus.publish(hold("written-before"))
    await engine.bus.stop()
    unsubscribe()  # the crash, as far as the notifier is concerned: its consumer never runs
    await engine.bus.publish(ev.AccountHalted(account="paper", reason="lost-halt"))
    await engine.bus.publish(hold("lost-hold"))
    await engine.bus.publish(ev.EngineStopped(account="engine"))  # nothing to say
    await engine.close()  # the journal's batch commits; nothing else runs
    db_path = settings.db_path
    assert rows_with(db_path, "written-before") == [(ADMIN, 1)]
    assert rows_with(db_path, "lost-") == []
    seen, end = checkpoint_and_end(db_path)
    assert seen == end - 3

    async with running(api, data) as r:  # the restart: the journal's tail becomes alerts
        assert r.runtime.notifier is not None
        assert rows_with(db_path, "lost-halt") == [(ADMIN, 1)]
        assert rows_with(db_path, "lost-hold") == [(ADMIN, 1)]
        await api.wait_for("sendMessage", lambda c: "lost-halt" in (c.text or ""))
    assert rows_with(db_path, "written-before") == [(ADMIN, 1)]
    seen, end = checkpoint_and_end(db_path)
    assert seen == end  # a clean stop: the notifier saw the journal to its end

    async with running(api, data):  # a clean restart writes nothing twice
        pass
    for marker in ("written-before", "lost-halt", "lost-hold"):
        assert rows_with(db_path, marker) == [(ADMIN, 1)], marker
    assert sum("lost-halt" in t for t in api.texts(ADMIN)) == 1  # sent once, too


async def test_an_event_the_journal_lost_gets_no_alert(db: Database) -> None:
    """Group commit: the notifier sees an event before its batch commits. It writes the alert
    only after that commit; a batch that fails takes the event from the journal, and then
    there is no alert and the checkpoint stays."""
    journal = Journal(db, background=True, linger=3600)  # batches close only when awaited
    bus = EventBus(journal.append)
    notifier = notifier_on(db, journal)
    bus.subscribe(notifier.on_event, queued=True, batch=notifier.on_published)
    await bus.publish(hold("kept-first"))
    await bus.stop()
    # Another writer takes the next id behind our back: the next batch cannot be written.
    other_writer_appends(db.path, "engine_stopped")
    await bus.publish(hold("never-journaled"))  # queued in the open batch, then refused
    await bus.stop()
    outbox = OutboxRepo(db)
    assert rows_with(db.path, "kept-first") == [(ADMIN, 1)]
    assert rows_with(db.path, "never-journaled") == []
    assert await outbox.pending_count() == 1
    assert await outbox.journal_checkpoint() == 1

    await bus.publish(hold("kept-after"))  # the chain goes on from the other writer's row
    await bus.stop()
    assert rows_with(db.path, "kept-after") == [(ADMIN, 1)]
    assert await outbox.journal_checkpoint() == 3
    assert await notifier_on(db, journal).catch_up() == 0  # nothing left behind


async def test_batches_with_nothing_to_say_move_the_checkpoint(db: Database) -> None:
    journal = Journal(db, background=True)
    bus = EventBus(journal.append)
    notifier = notifier_on(db, journal, chats=(ADMIN, GROUP))
    bus.subscribe(notifier.on_event, queued=True, batch=notifier.on_published)
    outbox = OutboxRepo(db)
    for _ in range(3):
        await bus.publish(ev.EngineStopped(account="engine"))  # journaled only
    await bus.stop()
    assert await outbox.pending_count() == 0
    assert await outbox.journal_checkpoint() == 3
    await bus.publish(hold("said"))
    await bus.stop()
    assert rows_with(db.path, "said") == [(ADMIN, 1), (GROUP, 1)]
    assert await outbox.journal_checkpoint() == 4
    assert await notifier_on(db, journal).catch_up() == 0


async def test_catch_up_and_live_events_together_are_each_written_once(db: Database) -> None:
    journal = Journal(db, background=True)
    bus = EventBus(journal.append)
    for i in range(5):  # a crashed process's tail: journaled, never alerted
        await bus.publish(hold(f"tail-{i}"))
    await journal.flush()
    notifier = notifier_on(db, journal)
    bus.subscribe(notifier.on_event, queued=True, batch=notifier.on_published)
    catching_up = asyncio.create_task(notifier.catch_up())
    for i in range(5):  # live while the catch-up reads and writes
        await bus.publish(hold(f"live-{i}"))
    assert await asyncio.wait_for(catching_up, 5) >= 5
    await bus.stop()
    for marker in [f"tail-{i}" for i in range(5)] + [f"live-{i}" for i in range(5)]:
        assert rows_with(db.path, marker) == [(ADMIN, 1)], marker
    assert await OutboxRepo(db).journal_checkpoint() == 10


async def test_catch_up_reads_the_journal_in_pages(db: Database,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.notifier.CATCH_UP_PAGE", 2)
    journal = Journal(db, background=True)
    for i in range(5):
        await journal.append(hold(f"paged-{i}"))
    await journal.append(ev.EngineStopped(account="engine"))
    await journal.flush()
    statements: list[str] = []
    await db.run(lambda conn: conn.set_trace_callback(statements.append))
    assert await notifier_on(db, journal).catch_up() == 6
    await db.run(lambda conn: conn.set_trace_callback(None))
    assert sum(s.startswith("COMMIT") for s in statements) == 3  # a transaction per page
    for i in range(5):
        assert rows_with(db.path, f"paged-{i}") == [(ADMIN, 1)]
    assert await OutboxRepo(db).journal_checkpoint() == 6


async def test_pruning_old_alerts_keeps_the_checkpoint(db: Database) -> None:
    from datetime import UTC, datetime, timedelta

    from engine.outbox import NewAlert

    outbox = OutboxRepo(db)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    (row,) = await outbox.enqueue_many([NewAlert(ADMIN, "old")], now=t0, journal_seq=41)
    await outbox.mark_sent(row, now=t0)
    assert await outbox.journal_checkpoint() == 41
    assert await outbox.prune(t0 + timedelta(days=1)) == 1
    assert await outbox.journal_checkpoint() == 41
    with pytest.raises(ValueError, match="journal_seq must be 0 or more, got -1"):
        await outbox.enqueue_many([], now=t0, journal_seq=-1)
    assert await outbox.journal_checkpoint() == 41


async def test_an_existing_journal_is_not_replayed_after_the_upgrade(tmp_path: Path) -> None:
    """Migration 008 starts the checkpoint at the journal's end: history before the upgrade
    was alerted (or not) by the code before, and is never replayed."""
    path = tmp_path / "old.db"
    old = await Database.open(path, migrations=bundled_migrations()[:7])
    journal = Journal(old)
    for i in range(3):
        await journal.append(hold(f"history-{i}"))
    await old.close()
    db = await Database.open(path)
    try:
        assert await OutboxRepo(db).journal_checkpoint() == 3
        assert await notifier_on(db, Journal(db)).catch_up() == 0
        assert rows_with(path, "history-") == []
    finally:
        await db.close()


KILLED = textwrap.dedent("""
    import asyncio, os, sys
    from pathlib import Path
    from aiogram import Bot
    from bot.i18n import build_i18n
    from bot.notifier import Notifier
    from bot.roles import RoleBook
    from engine.bus import EventBus
    from engine.clock import SystemClock
    from engine.domain import events as ev
    from storage.db import Database
    from storage.journal import Journal
    from storage.outbox import OutboxRepo
    from storage.repositories import StateRepo

    async def main():
        db = await Database.open(Path(sys.argv[1]))
        journal = Journal(db, background=True, linger=0.002)  # as the runtime's
        bus = EventBus(journal.append, queue_subscribers=True)
        notifier = Notifier(Bot("123456:killed"), chats=(100,), roles=RoleBook(admins=(100,)),
                            i18n=build_i18n(), state=StateRepo(db), clock=SystemClock(),
                            outbox=OutboxRepo(db), journal=journal)
        bus.subscribe(notifier.on_event, batch=notifier.on_published)
        await notifier.catch_up()
        for i in range(int(sys.argv[2])):
            await bus.publish(ev.HoldSet(account="paper", reason=f"burst-{i}", by="test"))
            if i % 7 == 0:  # let the journal and the notifier get part of the way
                await asyncio.sleep(0.001)
        if sys.argv[3] == "committed":
            await journal.flush()  # the kill lands between the journal's commit and the outbox's
        os._exit(9)  # kill -9: no close, the notifier's queue gone

    asyncio.run(main())
""")


@pytest.mark.parametrize(("events", "kill"), [(200, "open batch"), (200, "committed")])
async def test_a_killed_process_leaves_every_journaled_alert_written_exactly_once(
        tmp_path: Path, events: int, kill: str) -> None:
    path = tmp_path / "killed.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED, str(path), str(events), kill, cwd=ROOT,
        stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 9, stderr.decode()[-2000:]

    db = await Database.open(path)
    try:
        journal = Journal(db, background=True)
        replayed = await notifier_on(db, journal).catch_up()
        journaled = {r.payload["reason"] for r in await journal.rows(limit=10_000)}
    finally:
        await db.close()
    with closing(sqlite3.connect(path)) as conn:
        alerted = [t for (t,) in conn.execute("SELECT text FROM outbox WHERE count = 1")]
        assert conn.execute("SELECT COUNT(*) FROM outbox WHERE count != 1").fetchone()[0] == 0
    reasons = [t.split("HOLD by test: ")[1].split(".")[0] for t in alerted]
    assert sorted(reasons) == sorted(journaled)  # each journaled event once, nothing else
    assert 0 < len(journaled) <= events
    if kill == "committed":  # the window was crossed: these alerts came from the catch-up
        assert replayed > 0


async def test_a_row_that_no_longer_decodes_is_skipped_and_the_rest_caught_up(
        db: Database) -> None:
    journal = Journal(db, background=True)
    await journal.append(hold("before-it"))
    await journal.flush()
    other_writer_appends(db.path, "from_the_future")  # a kind this version does not know
    journal = Journal(db, background=True)  # a new process: reads the chain's end
    await journal.append(hold("after-it"))
    assert await notifier_on(db, journal).catch_up() == 3
    assert rows_with(db.path, "before-it") == rows_with(db.path, "after-it") == [(ADMIN, 1)]
    assert await OutboxRepo(db).journal_checkpoint() == 3


async def test_a_failing_outbox_ends_the_catch_up_without_failing_the_start(
        db: Database) -> None:
    journal = Journal(db, background=True)
    await journal.append(hold("while-the-disk-is-full"))
    await journal.flush()
    with closing(sqlite3.connect(db.path)) as other:
        other.execute("CREATE TRIGGER full BEFORE INSERT ON outbox"
                      " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        other.commit()
    notifier = notifier_on(db, journal)
    assert await notifier.catch_up() == 0  # logged, not raised
    assert await OutboxRepo(db).journal_checkpoint() == 0  # nothing was recorded as done
