"""The alert outbox on a real SQLite file: coalescing, order, rescheduling, survival; and how
alerts are packed into Telegram-sized messages."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.split import LIMIT, pack, split_message
from engine.outbox import DueChat, NewAlert, Priority
from storage.db import Database
from storage.outbox import OutboxRepo

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
A, B = 100, 200


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "vigil.sqlite3")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def outbox(db: Database) -> OutboxRepo:
    return OutboxRepo(db)


def secs(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


async def test_identical_pending_alerts_coalesce_into_one_row_with_a_count(
        outbox: OutboxRepo) -> None:
    first = await outbox.enqueue(A, "venue down", now=T0, dedupe_key="k")
    again = await outbox.enqueue(A, "venue down", now=secs(1), dedupe_key="k")
    third = await outbox.enqueue(A, "venue down", now=secs(2), dedupe_key="k", loud=True)
    other_chat = await outbox.enqueue(B, "venue down", now=secs(3), dedupe_key="k")
    no_key = [await outbox.enqueue(A, "note", now=secs(4)) for _ in range(2)]

    assert first == again == third
    assert len({first, other_chat, *no_key}) == 4
    row = await outbox.get(first)
    assert row is not None
    assert (row.count, row.loud, row.created_at, row.next_attempt_at) == (3, True, T0, T0)
    assert await outbox.pending_count() == 4
    assert await outbox.pending_count(A) == 3

    # Once delivered, the same alert raised again is a new message.
    await outbox.mark_sent(first, now=secs(5), count=3)
    fresh = await outbox.enqueue(A, "venue down", now=secs(6), dedupe_key="k")
    assert fresh != first
    sent = await outbox.get(first)
    assert sent is not None and sent.status == "sent" and sent.sent_at == secs(5)


async def test_repeats_raised_while_sending_stay_pending(outbox: OutboxRepo) -> None:
    row_id = await outbox.enqueue(A, "SLA breached", now=T0, dedupe_key="k")
    [being_sent] = await outbox.due(T0)
    await outbox.enqueue(A, "SLA breached", now=secs(0.1), dedupe_key="k")  # during the send
    assert await outbox.mark_sent(row_id, now=secs(0.2), count=being_sent.count) is False
    [left] = await outbox.due(secs(0.2))
    assert (left.id, left.count, left.status) == (row_id, 1, "pending")
    assert await outbox.mark_sent(row_id, now=secs(1), count=left.count) is True
    assert await outbox.pending_count() == 0


async def test_due_is_oldest_first_and_respects_next_attempt(outbox: OutboxRepo) -> None:
    ids = [await outbox.enqueue(chat, f"alert {n}", now=secs(n), dedupe_key=str(n))
           for n, chat in enumerate((A, B, A, B))]
    assert [r.id for r in await outbox.due(secs(1.5))] == ids[:2]
    assert [r.id for r in await outbox.due(secs(10))] == ids
    assert [r.id for r in await outbox.due(secs(10), limit=3)] == ids[:3]
    assert await outbox.next_due_at() == T0
    assert [r.id for r in await outbox.pending(B)] == [ids[1], ids[3]]


async def test_reschedule_moves_an_alert_later_and_counts_the_attempt(
        outbox: OutboxRepo) -> None:
    first = await outbox.enqueue(A, "one", now=T0)
    second = await outbox.enqueue(A, "two", now=secs(0.5))
    await outbox.reschedule(first, secs(30), "429: Too Many Requests")

    assert [r.id for r in await outbox.due(secs(1))] == [second]
    assert await outbox.next_due_at() == secs(0.5)
    row = await outbox.get(first)
    assert row is not None
    assert (row.attempts, row.next_attempt_at, row.last_error) == (
        1, secs(30), "429: Too Many Requests")
    await outbox.reschedule(first, secs(31), "TelegramServerError: Bad Gateway")
    # Both due again: still in the order they were raised.
    assert [r.id for r in await outbox.due(secs(31))] == [first, second]
    row = await outbox.get(first)
    assert row is not None and row.attempts == 2


async def test_a_held_chat_keeps_its_order_and_new_alerts_wait_behind(
        outbox: OutboxRepo) -> None:
    held = await outbox.enqueue(A, "bounced", now=T0)
    behind = await outbox.enqueue(A, "raised before the 429", now=T0)
    elsewhere = await outbox.enqueue(B, "other chat", now=T0)
    await outbox.reschedule(held, secs(5), "429: Too Many Requests")
    assert await outbox.hold_chat(A, secs(5)) == 1
    later = await outbox.enqueue(A, "raised during the hold", now=secs(1))

    assert [r.id for r in await outbox.due(secs(4))] == [elsewhere]
    assert [r.id for r in await outbox.due(secs(5))] == [held, behind, elsewhere, later]
    rows = {r.id: r for r in await outbox.pending()}
    assert rows[later].created_at == secs(1) and rows[later].next_attempt_at == secs(5)
    assert (rows[held].attempts, rows[behind].attempts) == (1, 0)


async def test_drop_drop_chat_move_chat_and_prune(outbox: OutboxRepo) -> None:
    bad = await outbox.enqueue(A, "bad", now=T0)
    keep = await outbox.enqueue(A, "keep", now=T0)
    await outbox.drop(bad, "400: Bad Request: chat not found")
    for n in range(3):
        await outbox.enqueue(B, f"b{n}", now=T0)
    assert await outbox.drop_chat(B, "403: Forbidden: bot was blocked by the user") == 3
    assert [r.id for r in await outbox.due(secs(1))] == [keep]
    dropped = await outbox.get(bad)
    assert dropped is not None
    assert (dropped.status, dropped.last_error) == ("dropped", "400: Bad Request: chat not found")

    dup = await outbox.enqueue(A, "same", now=T0, dedupe_key="s")
    await outbox.enqueue(-200, "same", now=T0, dedupe_key="s")  # already there for the new id
    assert await outbox.move_chat(A, -200) == 1
    assert {r.chat_id for r in await outbox.pending()} == {-200}
    duplicate = await outbox.get(dup)
    assert duplicate is not None and duplicate.status == "dropped"

    await outbox.mark_sent(keep, now=secs(1))
    assert await outbox.prune(secs(1)) == 6  # sent and dropped, not the pending one
    assert await outbox.pending_count() == 1


async def test_pending_alerts_survive_closing_the_database(tmp_path: Path) -> None:
    path = tmp_path / "vigil.sqlite3"
    db = await Database.open(path)
    row_id = await OutboxRepo(db).enqueue(A, "queued before a restart", now=T0, loud=True)
    await db.close()

    with sqlite3.connect(path) as raw:  # committed to the file, not just to a cache
        assert raw.execute("SELECT status FROM outbox WHERE id = ?", (row_id,)).fetchone() == (
            "pending",)
    db = await Database.open(path)
    try:
        [row] = await OutboxRepo(db).due(secs(1))
        assert (row.id, row.text, row.loud) == (row_id, "queued before a restart", True)
    finally:
        await db.close()


async def test_times_must_be_timezone_aware(outbox: OutboxRepo) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await outbox.enqueue(A, "x", now=datetime(2026, 1, 5, 12, 0))


# --- packing alerts into messages ----------------------------------------------------------
def test_pack_joins_alerts_and_cuts_only_between_them() -> None:
    alerts = ["a" * 3000, "b" * 1000, "c" * 200]
    chunks = pack([split_message(t) for t in alerts])
    assert [c.text for c in chunks] == ["a" * 3000 + "\n" + "b" * 1000, "c" * 200]
    assert [c.done for c in chunks] == [(0, 1), (2,)]
    assert all(len(c.text) <= LIMIT for c in chunks)


def test_pack_splits_a_giant_alert_on_line_boundaries() -> None:
    lines = [f"{n:03d} " + "x" * 55 for n in range(100)]  # 100 lines of 59 characters
    text = "\n".join(lines)
    chunks = pack([split_message(text), ["next alert"]])
    assert len(chunks) == 2
    first, second = chunks
    assert len(first.text) <= LIMIT
    assert first.text == "\n".join(lines[:first.text.count("\n") + 1])  # whole lines only
    assert first.text + "\n" + second.text == text + "\nnext alert"
    assert (first.parts, first.done) == ({0: 1}, ())
    assert (second.parts, second.done) == ({0: 1, 1: 1}, (0, 1))


# --- issue 17: priority, per-chat reads, stale routine alerts, reported strangers ------------
async def test_due_chats_put_critical_first_and_each_chat_reads_its_own_rows(
        outbox: OutboxRepo) -> None:
    routine = [await outbox.enqueue(A, f"routine {n}", now=secs(n)) for n in range(3)]
    late_b = await outbox.enqueue(B, "routine for B", now=secs(4))
    critical = await outbox.enqueue(A, "critical", now=secs(5), priority=Priority.CRITICAL)
    c = await outbox.enqueue(300, "critical for C", now=secs(6), priority=Priority.CRITICAL)
    assert await outbox.due_chats(secs(10)) == [
        DueChat(A, Priority.CRITICAL, routine[0]), DueChat(300, Priority.CRITICAL, c),
        DueChat(B, Priority.ROUTINE, late_b)]
    assert [r.id for r in await outbox.due_for_chat(A, secs(10), 10)] == [critical, *routine]
    assert [r.id for r in await outbox.due_for_chat(A, secs(10), 2)] == [critical, routine[0]]
    assert await outbox.due_chats(secs(3.5)) == [DueChat(A, Priority.ROUTINE, routine[0])]


async def test_a_repeat_can_make_a_pending_alert_critical_and_adds_its_count(
        outbox: OutboxRepo) -> None:
    row_id = await outbox.enqueue(A, "x", now=T0, dedupe_key="k")
    await outbox.enqueue(A, "x", now=secs(1), dedupe_key="k", priority=Priority.CRITICAL,
                         count=5)
    await outbox.enqueue(A, "x", now=secs(2), dedupe_key="k")  # never demoted
    row = await outbox.get(row_id)
    assert row is not None and (row.priority, row.count) == (Priority.CRITICAL, 7)
    with pytest.raises(ValueError, match="count must be at least 1, got 0"):
        await outbox.enqueue(A, "y", now=T0, count=0)
    assert await outbox.pending_count() == 1


async def test_stale_routine_alerts_are_dropped_per_chat_never_critical_ones(
        outbox: OutboxRepo) -> None:
    await outbox.enqueue(A, "old", now=T0, dedupe_key="old", count=4)
    await outbox.enqueue(A, "old critical", now=T0, priority=Priority.CRITICAL)
    await outbox.enqueue(A, "the note", now=T0, dedupe_key="note")
    await outbox.enqueue(B, "old too", now=secs(1))
    await outbox.enqueue(B, "fresh", now=secs(100))
    assert await outbox.drop_stale_routine(secs(50), "too old", "note") == {A: 4, B: 1}
    assert sorted(r.text for r in await outbox.pending()) == ["fresh", "old critical",
                                                              "the note"]
    assert await outbox.drop_stale_routine(secs(50), "too old", "note") == {}


async def test_reported_strangers_are_bounded_to_the_newest(outbox: OutboxRepo) -> None:
    assert await outbox.strangers_known([]) == set()
    await outbox.remember_strangers([1, 2, 3], now=T0, keep=4)
    await outbox.remember_strangers([4, 5], now=secs(1), keep=4)
    assert await outbox.strangers_known(range(10)) == {2, 3, 4, 5}
    await outbox.remember_strangers([2], now=secs(2), keep=2)  # reported again: newest
    assert await outbox.strangers_known(range(10)) == {2, 5}


async def test_enqueue_many_writes_in_order_coalesces_and_refuses_a_bad_batch_whole(
        outbox: OutboxRepo) -> None:
    ids = await outbox.enqueue_many([NewAlert(A, "one", dedupe_key="k1"),
                                     NewAlert(B, "one", dedupe_key="k1"),
                                     NewAlert(A, "one", dedupe_key="k1", loud=True,
                                              priority=Priority.CRITICAL)], now=T0)
    assert ids[0] == ids[2] != ids[1]  # the repeat in the same batch coalesces
    row = await outbox.get(ids[0])
    assert row is not None and (row.count, row.loud, row.priority) == (2, True,
                                                                       Priority.CRITICAL)
    with pytest.raises(ValueError, match="count must be at least 1, got 0"):
        await outbox.enqueue_many([NewAlert(A, "two"), NewAlert(B, "three", count=0)], now=T0)
    assert await outbox.pending_count() == 2  # nothing of the refused batch was written
    assert await outbox.enqueue_many([], now=T0) == []
