"""Group commit: rows queued in call order, one transaction per batch, the chain intact; intents
wait for their commit, other events (in the background mode) do not; a crash loses only the
non-intent rows of the open batch."""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import sqlite3
import sys
import textwrap
import typing
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from engine.domain import events as ev
from engine.domain.events import event_from_payload
from storage.db import Database
from storage.journal import Journal, JournalWriteError, canonical, chain_hash, payload_text
from storage.times import to_text

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
ROOT = Path(__file__).resolve().parents[2]


def placed(i: int) -> ev.StopPlaced:
    return ev.StopPlaced(account="main", at=T0 + timedelta(seconds=i), symbol=BTC,
                         order_id=str(i), client_id=f"c{i}", trigger_price=Decimal("63700.1"),
                         qty=Decimal("0.5"), time_to_protect=None)


def intent(i: int) -> ev.StopIntent:
    return ev.StopIntent(account="main", at=T0 + timedelta(seconds=i), symbol=BTC,
                         action="place", client_id=f"c{i}", trigger_price=Decimal("63700.1"),
                         qty=Decimal("0.5"))


def on_disk(path: Path) -> list[tuple[int, str]]:
    """What another connection (another process, or this one after a crash) can read."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT id, kind FROM journal ORDER BY id").fetchall()


def test_only_intents_are_marked_durable() -> None:
    durable = {kind for kind, cls in ev.EVENT_TYPES.items() if cls.durable}
    assert durable == {"stop_intent", "close_intent", "cancel_intent", "entry_intent",
                       "take_profit_intent"}


def test_chain_hash_is_the_canonical_json_of_the_row() -> None:
    """The fast body equals json.dumps of the row, also with quotes, backslashes, non-ASCII and
    control characters (so old journals still verify)."""
    at, account, kind = "2026-01-05T12:00:00+00:00", 'ac"c\\ount ü', "hold_set"
    payload = json.dumps({"reason": "причина \"x\" \n\t\u0001 ✓"}, ensure_ascii=False)
    body = json.dumps({"at": at, "account": account, "kind": kind, "payload": payload},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(("ab" * 32 + body).encode()).hexdigest()
    assert chain_hash("ab" * 32, at, account, kind, payload) == expected


SAMPLE = {str: 'q"uo\\te ü ✓\n\u0001', Decimal: Decimal("-1.50E-7"), int: -7, bool: True,
          datetime: datetime(2026, 1, 5, 15, 0, 0, 123456, tzinfo=timezone(timedelta(hours=3)))}


def every_event(optional_as_none: bool) -> list[ev.Event]:
    out = []
    for cls in ev.EVENT_TYPES.values():
        values = {}
        for name, hint in typing.get_type_hints(cls).items():
            if typing.get_origin(hint) is typing.ClassVar:
                continue
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            if args and optional_as_none:
                values[name] = None
            else:
                kind = args[0] if args else hint
                # enums: their first member, as the event vocabulary (sides, reasons) would be
                values[name] = next(iter(kind)) if isinstance(kind, type) and issubclass(
                    kind, enum.Enum) else SAMPLE[kind]
        out.append(cls(**values))
    return out


@pytest.mark.parametrize("optional_as_none", [False, True])
def test_payload_text_is_the_canonical_payload_of_every_event_type(
        optional_as_none: bool) -> None:
    events = every_event(optional_as_none)
    assert len(events) == len(ev.EVENT_TYPES)
    for event in events:
        at, text = payload_text(event)
        payload = {name: to_text(getattr(event, name)) if isinstance(getattr(event, name),
                                                                      datetime) else value
                   for name, value in event.payload().items()}
        assert text == canonical(payload), event.kind
        assert at == payload["at"] == "2026-01-05T12:00:00.123456Z"  # UTC, fixed width
        assert event_from_payload(event.kind, json.loads(text)) == event


async def test_background_appends_return_before_the_row_is_written_and_share_a_batch(
        db: Database) -> None:
    journal = Journal(db, background=True)
    ids = [await journal.append(placed(i)) for i in range(50)]

    assert ids == list(range(1, 51))
    assert on_disk(db.path) == []  # queued, not written: nothing awaited a commit
    await journal.flush()
    assert [i for i, _ in on_disk(db.path)] == ids
    assert journal.batches == 1
    assert (await journal.verify()).ok


async def test_an_intent_returns_only_once_committed_with_what_was_queued_before(
        db: Database) -> None:
    journal = Journal(db, background=True, linger=3600)  # nobody would close a batch by time
    for i in range(3):
        await journal.append(placed(i))
    intent_id = await asyncio.wait_for(journal.append(intent(3)), 5)

    # Visible to another connection: committed, not just inside an open transaction.
    assert on_disk(db.path) == [(1, "stop_placed"), (2, "stop_placed"), (3, "stop_placed"),
                                (intent_id, "stop_intent")]
    assert journal.batches == 1


async def test_default_mode_commits_every_append_before_returning(db: Database) -> None:
    journal = Journal(db)
    row_id = await journal.append(placed(0))
    assert on_disk(db.path) == [(row_id, "stop_placed")]


async def test_concurrent_appends_share_commits_and_keep_call_order(db: Database) -> None:
    journal = Journal(db)  # every append waits: concurrent ones ride the same commit

    async def writer(n: int) -> list[int]:
        return [await journal.append(placed(n * 100 + i)) for i in range(20)]

    per_task = await asyncio.gather(*(writer(n) for n in range(10)))

    assert sorted(i for ids in per_task for i in ids) == list(range(1, 201))
    assert all(ids == sorted(ids) for ids in per_task)
    assert journal.batches <= 25  # 200 rows, not 200 commits
    result = await journal.verify()
    assert result.ok and result.rows == 200


async def test_a_batch_closes_at_its_size(db: Database) -> None:
    journal = Journal(db, background=True, batch_size=10, linger=3600)
    for i in range(25):
        await journal.append(placed(i))
    await journal.flush()
    assert journal.batches == 3  # 10 + 10 + 5
    assert (await journal.verify()).rows == 25


def count_rows(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])


async def test_a_full_batch_is_written_while_the_loop_keeps_appending(db: Database) -> None:
    """Under load appends never yield; a full batch still goes to the connection's thread at
    once (one multi-row statement), the rest waits for the writer task."""
    journal = Journal(db, background=True, batch_size=10, linger=3600)
    await journal.append(placed(0))
    await journal.flush()
    for i in range(1, 24):  # 23 appends, not one yielding: two full batches and 3 rows
        await journal.append(placed(i))
    # Queued behind the two batches on the same thread, before the writer task ever ran.
    assert await db.run(count_rows) == 21
    await journal.flush()
    assert await db.run(count_rows) == 24
    assert journal.batches == 4  # 1 + 10 + 10 + 3
    result = await journal.verify()
    assert result.ok and result.rows == 24
    assert [r.event() for r in await journal.rows()] == [placed(i) for i in range(24)]


async def test_batches_queued_behind_a_failed_one_are_refused_not_written(
        db: Database) -> None:
    """Rows chain on the rows before them: if a batch fails, the batches already handed to the
    thread behind it must not be written (they would link to rows that are not there)."""
    journal = Journal(db, background=True, batch_size=5, linger=3600)
    await journal.append(intent(0))
    with closing(sqlite3.connect(db.path)) as other:  # takes id 3, inside our next batch
        prev = other.execute("SELECT hash FROM journal").fetchone()[0]
        other.execute("INSERT INTO journal VALUES (3, 'x', 'main', 'x', '{}', ?, 'x')", (prev,))
        other.commit()
    for i in range(1, 13):  # ids 2..6 (fails on 3), 7..11 (refused), 12 (not yet sent)
        await journal.append(placed(i))
    with pytest.raises(JournalWriteError, match="12 rows lost"):
        await journal.flush()
    assert on_disk(db.path) == [(1, "stop_intent"), (3, "x")]
    assert journal.write_error is not None and "12 rows lost" in journal.write_error


async def test_a_lingering_batch_closes_by_itself(db: Database) -> None:
    journal = Journal(db, background=True, linger=0.01)
    await journal.append(placed(0))
    for _ in range(500):  # real time: linger is about I/O batching, not engine time
        if on_disk(db.path):
            break
        await asyncio.sleep(0.01)
    assert on_disk(db.path) == [(1, "stop_placed")]


async def test_readers_see_their_own_writes(db: Database) -> None:
    journal = Journal(db, background=True, linger=3600)
    await journal.append(placed(0))
    assert [r.kind for r in await journal.rows()] == ["stop_placed"]


async def test_close_writes_the_last_batch(db_path: Path) -> None:
    db = await Database.open(db_path)
    journal = Journal(db, background=True, linger=3600)
    await journal.append(placed(0))
    await db.close()
    assert on_disk(db_path) == [(1, "stop_placed")]


async def test_a_failed_batch_fails_its_intent_and_the_chain_continues_after_it(
        db: Database) -> None:
    journal = Journal(db, background=True)
    await journal.append(intent(0))
    # Another writer takes the next id behind our back: our next batch cannot be written.
    with closing(sqlite3.connect(db.path)) as other:
        prev = other.execute("SELECT hash FROM journal").fetchone()[0]
        at, payload = T0.isoformat(), '{"x":1}'
        other.execute("INSERT INTO journal VALUES (2, ?, 'main', 'engine_stopped', ?, ?, ?)",
                      (at, payload, prev, chain_hash(prev, at, "main", "engine_stopped",
                                                     payload)))
        other.commit()
    await journal.append(placed(1))  # queued, chained on the row it believes is last
    with pytest.raises(JournalWriteError, match="2 rows lost"):
        await journal.append(intent(2))

    assert await journal.append(intent(3)) == 3  # re-read the end of the chain
    assert on_disk(db.path) == [(1, "stop_intent"), (2, "engine_stopped"), (3, "stop_intent")]
    result = await journal.verify()
    assert result.ok and result.rows == 3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, "batch_size must be 1 to 4000, got 0"),
    ({"batch_size": 4001}, "batch_size must be 1 to 4000, got 4001"),
    ({"linger": -0.5}, "linger must be 0 or more seconds, got -0.5"),
])
async def test_bad_settings_are_refused(db: Database, kwargs: dict[str, float],
                                        message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Journal(db, **kwargs)  # type: ignore[arg-type]


CRASH = textwrap.dedent("""
    import asyncio, os, sys
    from datetime import UTC, datetime
    from decimal import Decimal
    from pathlib import Path
    from engine.domain import events as ev
    from storage.db import Database
    from storage.journal import Journal

    async def main():
        db = await Database.open(Path(sys.argv[1]))
        journal = Journal(db, background=True, linger=3600)
        at = datetime(2026, 1, 5, tzinfo=UTC)
        for i in range(3):
            await journal.append(ev.StopMissing(account="a", at=at, symbol="X", side="long",
                                                qty=Decimal(1)))
        await journal.append(ev.StopIntent(account="a", at=at, symbol="X", action="place",
                                           client_id="c", trigger_price=Decimal(1),
                                           qty=Decimal(1)))
        for i in range(5):  # the open batch at the crash
            await journal.append(ev.StopPlaced(account="a", at=at, symbol="X", order_id=str(i),
                                               client_id="c", trigger_price=Decimal(1),
                                               qty=Decimal(1), time_to_protect=None))
        os._exit(9)  # no close, no flush: a crash

    asyncio.run(main())
""")


async def test_a_crash_loses_only_the_non_intent_rows_of_the_open_batch(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH, str(db_path), cwd=ROOT, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 9, stderr.decode()

    assert [k for _, k in on_disk(db_path)] == ["stop_missing"] * 3 + ["stop_intent"]
    db = await Database.open(db_path)
    try:
        journal = Journal(db, background=True)
        assert await journal.append(intent(9)) == 5  # the chain goes on after the crash
        result = await journal.verify()
        assert result.ok and result.rows == 5
    finally:
        await db.close()
