"""The journal: append-only, hash-chained; tampering with any stored row is detected."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from engine.domain import events as ev
from storage.db import Database
from storage.journal import GENESIS, Journal
from tests.storage.conftest import scalar

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
CID = "vgs0123456789abcdef0123"


def sample_events() -> list[ev.Event]:
    """A mix of event types and field types: Decimals, None, bools, ints, aware datetimes."""
    return [
        ev.EngineStarted(account="main", at=T0, mode="paper"),
        ev.PositionAdopted(account="main", at=T0 + timedelta(seconds=1), symbol=BTC, side="long",
                           qty=Decimal("0.500"), entry_price=Decimal("65000.10"), generation=3),
        ev.StopIntent(account="main", at=T0 + timedelta(seconds=2), symbol=BTC, action="place",
                      client_id=CID, trigger_price=Decimal("63700.1"), qty=Decimal("0.500")),
        ev.StopPlaced(account="main", at=T0 + timedelta(seconds=3), symbol=BTC, order_id="4001",
                      client_id=CID, trigger_price=Decimal("63700.1"), qty=Decimal("0.500"),
                      time_to_protect=Decimal("0.731")),
        ev.StreamChanged(account="other", at=T0 + timedelta(seconds=4), up=False,
                         reason="socket closed"),
        # a non-UTC timestamp is stored as UTC and still equals the original instant
        ev.PositionClosed(account="main",
                          at=datetime(2026, 1, 5, 15, 0, 5, tzinfo=timezone(timedelta(hours=3))),
                          symbol=BTC, side="long", qty=Decimal("0.500"),
                          entry_price=Decimal("65000.10"), exit_price=None, realized_pnl=None,
                          reason="closed on venue"),
    ]


async def append_all(journal: Journal, events: list[ev.Event]) -> list[int]:
    return [await journal.append(e) for e in events]


async def test_rows_round_trip_to_the_same_events(db: Database) -> None:
    journal = Journal(db)
    events = sample_events()
    ids = await append_all(journal, events)

    rows = await journal.rows()

    assert [r.id for r in rows] == ids == sorted(ids)
    assert [r.kind for r in rows] == [e.kind for e in events]
    assert [r.event() for r in rows] == events
    assert [type(r.event()) for r in rows] == [type(e) for e in events]
    adopted = rows[1].event()
    assert isinstance(adopted, ev.PositionAdopted)
    assert str(adopted.qty) == "0.500" and str(adopted.entry_price) == "65000.10"
    assert all(r.event().at.tzinfo is not None for r in rows)
    assert rows[5].at == "2026-01-05T12:00:05.000000Z"  # storage.times text, as every table


async def test_rows_filter_by_account_kind_and_position(db: Database) -> None:
    journal = Journal(db)
    ids = await append_all(journal, sample_events())

    assert [r.kind for r in await journal.rows(account="other")] == ["stream_changed"]
    assert [r.id for r in await journal.rows(kinds=("stop_intent", "stop_placed"))] == ids[2:4]
    assert [r.id for r in await journal.rows(since_id=ids[3])] == ids[4:]
    assert [r.id for r in await journal.rows(limit=2)] == ids[:2]


async def test_intact_chain_verifies(db: Database) -> None:
    journal = Journal(db)
    await append_all(journal, sample_events())

    result = await journal.verify()

    assert result.ok and result.rows == 6 and result.broken_id is None


async def test_empty_journal_verifies(db: Database) -> None:
    result = await Journal(db).verify()
    assert result.ok and result.rows == 0


async def test_each_row_links_to_the_previous_hash(db: Database) -> None:
    """hash = sha256(prev_hash || canonical JSON of at, account, kind, payload text)."""
    journal = Journal(db)
    await append_all(journal, sample_events()[:3])

    async with db.conn.execute(
            "SELECT at, account, kind, payload, prev_hash, hash FROM journal ORDER BY id") as cur:
        stored = [tuple(r) for r in await cur.fetchall()]

    prev = "0" * 64
    assert prev == GENESIS
    for at, account, kind, payload, prev_hash, digest in stored:
        body = json.dumps({"at": at, "account": account, "kind": kind, "payload": payload},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert prev_hash == prev
        assert digest == hashlib.sha256((prev + body).encode()).hexdigest()
        prev = digest


async def test_tampered_payload_is_detected_and_named(db: Database) -> None:
    journal = Journal(db)
    ids = await append_all(journal, sample_events())
    victim = ids[2]  # the StopIntent: pretend it asked for a looser stop
    await db.conn.execute(
        "UPDATE journal SET payload = replace(payload, '63700.1', '60000.0') WHERE id = ?",
        (victim,))
    await db.conn.commit()
    (tampered,) = await journal.rows(kinds=("stop_intent",))
    assert tampered.payload["trigger_price"] == "60000.0"  # the UPDATE did land

    result = await journal.verify()

    assert not result.ok
    assert result.broken_id == victim
    assert result.reason == "hash does not match contents"


async def test_tampered_account_or_kind_column_is_detected(db: Database) -> None:
    journal = Journal(db)
    ids = await append_all(journal, sample_events())
    await db.conn.execute("UPDATE journal SET account = 'evil' WHERE id = ?", (ids[4],))
    await db.conn.commit()

    result = await journal.verify()

    assert (result.ok, result.broken_id) == (False, ids[4])


async def test_deleted_middle_row_is_detected_at_the_next_row(db: Database) -> None:
    journal = Journal(db)
    ids = await append_all(journal, sample_events())
    await db.conn.execute("DELETE FROM journal WHERE id = ?", (ids[2],))
    await db.conn.commit()

    result = await journal.verify()

    assert not result.ok
    assert result.broken_id == ids[3]
    assert result.reason == "prev_hash does not link"


async def test_tampered_hash_column_is_detected(db: Database) -> None:
    journal = Journal(db)
    ids = await append_all(journal, sample_events())
    await db.conn.execute("UPDATE journal SET hash = ? WHERE id = ?", ("f" * 64, ids[1]))
    await db.conn.commit()

    result = await journal.verify()

    assert (result.ok, result.broken_id) == (False, ids[1])


async def test_rewriting_a_row_with_a_fresh_hash_breaks_the_next_link(db: Database) -> None:
    """An attacker who recomputes the tampered row's own hash is caught one row later."""
    journal = Journal(db)
    ids = await append_all(journal, sample_events())
    async with db.conn.execute(
            "SELECT at, account, kind, payload, prev_hash FROM journal WHERE id = ?",
            (ids[2],)) as cur:
        at, account, kind, payload, prev_hash = await cur.fetchone()
    forged = payload.replace("63700.1", "60000.0")
    body = json.dumps({"at": at, "account": account, "kind": kind, "payload": forged},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    forged_hash = hashlib.sha256((prev_hash + body).encode()).hexdigest()
    await db.conn.execute("UPDATE journal SET payload = ?, hash = ? WHERE id = ?",
                          (forged, forged_hash, ids[2]))
    await db.conn.commit()

    result = await journal.verify()

    assert (result.ok, result.broken_id, result.reason) == (
        False, ids[3], "prev_hash does not link")


async def test_chain_survives_reopening_the_database(db_path: Path) -> None:
    first = await Database.open(db_path)
    try:
        await append_all(Journal(first), sample_events()[:3])
        last_hash = await scalar(first, "SELECT hash FROM journal ORDER BY id DESC LIMIT 1")
    finally:
        await first.close()

    second = await Database.open(db_path)
    try:
        journal = Journal(second)
        new_id = await journal.append(ev.EngineStopped(account="main", at=T0 + timedelta(1)))
        prev = await scalar(second, "SELECT prev_hash FROM journal WHERE id = ?", new_id)
        result = await journal.verify()
        rows = await journal.rows()
    finally:
        await second.close()

    assert prev == last_hash and prev != GENESIS
    assert result.ok and result.rows == 4
    assert [r.kind for r in rows][-1] == "engine_stopped"


async def test_decimals_are_stored_as_exact_text(db: Database) -> None:
    journal = Journal(db)
    qty = Decimal("0.100000000000000000000000000001")  # more digits than a float holds
    row_id = await journal.append(ev.StopMissing(account="main", at=T0, symbol=BTC, side="long",
                                                 qty=qty))

    kind_of = await scalar(db, "SELECT typeof(json_extract(payload, '$.qty')) FROM journal"
                               " WHERE id = ?", row_id)
    text = await scalar(db, "SELECT json_extract(payload, '$.qty') FROM journal WHERE id = ?",
                        row_id)
    (row,) = await journal.rows()

    assert kind_of == "text"
    assert text == "0.100000000000000000000000000001"
    event = row.event()
    assert isinstance(event, ev.StopMissing) and event.qty == qty
