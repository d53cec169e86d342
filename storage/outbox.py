"""The alert outbox: alerts are written here before they are sent, and stay until delivered.

Times are stored as fixed-width UTC text (`2026-01-05T12:00:00.000000Z`), so comparing the text
compares the times. Every write commits: an alert the caller awaited survives a crash. Every
statement runs to completion in one call (`execute_fetchall`): the connection is shared with the
journal, and a statement left open across an await (a half-read INSERT ... RETURNING) makes
another task's COMMIT fail with "SQL statements in progress".
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import partial

from engine.outbox import AlertButtons, DueChat, NewAlert, OutboxRow, Priority
from storage.db import Database
from storage.times import from_text, to_text

PENDING, SENT, DROPPED = "pending", "sent", "dropped"


def _optional(value: str | None) -> datetime | None:
    return from_text(value) if value else None


def _row(r: sqlite3.Row) -> OutboxRow:
    created, due = from_text(r["created_at"]), from_text(r["next_attempt_at"])
    return OutboxRow(id=r["id"], chat_id=r["chat_id"], text=r["text"], loud=bool(r["loud"]),
                     dedupe_key=r["dedupe_key"], count=r["count"], created_at=created,
                     next_attempt_at=due, attempts=r["attempts"], status=r["status"],
                     sent_at=_optional(r["sent_at"]), last_error=r["last_error"],
                     priority=Priority(r["priority"]),
                     buttons=AlertButtons.from_json(r["buttons"]) if r["buttons"] else None)


_ENQUEUE = (
    "INSERT INTO outbox (chat_id, text, loud, dedupe_key, count, created_at,"
    " next_attempt_at, status, priority, buttons, journal_seq)"
    " VALUES (:chat, :text, :loud, :key, :n, :at,"
    "  MAX(:at, COALESCE((SELECT MAX(next_attempt_at) FROM outbox"
    "   WHERE chat_id = :chat AND status = 'pending'), :at)), 'pending', :prio,"
    "  :buttons, :seq)"
    " ON CONFLICT (chat_id, dedupe_key)"
    "  WHERE status = 'pending' AND dedupe_key IS NOT NULL"
    " DO UPDATE SET count = count + excluded.count, loud = MAX(loud, excluded.loud),"
    "  priority = MAX(priority, excluded.priority),"
    "  buttons = COALESCE(excluded.buttons, buttons),"
    "  journal_seq = COALESCE(MAX(journal_seq, excluded.journal_seq), journal_seq,"
    "   excluded.journal_seq)"
    " RETURNING id")
# A batch of journal events with nothing to say still moves the notifier's checkpoint.
_CHECKPOINT = "UPDATE outbox_checkpoint SET journal_seq = MAX(journal_seq, ?)"
# How far the notifier got: alert rows carry it (no statement of its own per alert), and the
# checkpoint row has it for batches without alerts and for rows pruned since.
_READ_CHECKPOINT = ("SELECT MAX((SELECT journal_seq FROM outbox_checkpoint),"
                    " COALESCE((SELECT MAX(journal_seq) FROM outbox), 0))")


def _insert_alerts(params: list[dict[str, object]], journal_seq: int | None,
                   conn: sqlite3.Connection) -> list[int]:
    """On the connection's thread: each INSERT ... RETURNING read to its end (no statement left
    open), then one commit. A failure takes back these rows only if the transaction is ours."""
    ours = not conn.in_transaction
    try:
        ids = [int(conn.execute(_ENQUEUE, p).fetchall()[0][0]) for p in params]
        if not params and journal_seq is not None:
            conn.execute(_CHECKPOINT, (journal_seq,))
    except BaseException:
        if ours:
            conn.rollback()
        raise
    conn.commit()
    return ids


class OutboxRepo:
    """Implements `engine.outbox.Outbox`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(self, chat_id: int, text: str, *, now: datetime, loud: bool = False,
                      dedupe_key: str | None = None, priority: Priority = Priority.ROUTINE,
                      count: int = 1, buttons: AlertButtons | None = None) -> int:
        """Add an alert due at `now`, or later if an older alert for the chat waits (a chat's
        alerts never overtake each other, so a 429 or backoff hold on a chat holds what comes
        after it too, across restarts); return its row id.

        With a `dedupe_key`, a pending alert for the same chat and key is not duplicated: its
        `count` goes up by `count` (and it becomes loud or critical if the repeat is), and its
        place in line is kept.
        """
        ids = await self.enqueue_many([NewAlert(chat_id, text, loud, dedupe_key, priority, count,
                                                buttons)], now=now)
        return ids[0]

    async def enqueue_many(self, alerts: Sequence[NewAlert], *, now: datetime,
                           journal_seq: int | None = None) -> list[int]:
        """`enqueue` for each alert in order, in one job on the connection's thread and one
        commit (an alert for several chats, or alerts raised together). `journal_seq`: the
        journal events up to this sequence have been turned into these alerts (or into none);
        recorded in the same transaction (`journal_checkpoint`)."""
        for alert in alerts:
            if alert.count < 1:
                raise ValueError(f"count must be at least 1, got {alert.count}")
        if journal_seq is not None and journal_seq < 0:
            raise ValueError(f"journal_seq must be 0 or more, got {journal_seq}")
        at = to_text(now)
        params = [{"chat": a.chat_id, "text": a.text, "loud": int(a.loud), "key": a.dedupe_key,
                   "at": at, "n": a.count, "prio": int(a.priority),
                   "buttons": a.buttons.to_json() if a.buttons is not None else None,
                   "seq": journal_seq}
                  for a in alerts]
        if not params and journal_seq is None:
            return []
        return await self.db.run(partial(_insert_alerts, params, journal_seq))

    async def journal_checkpoint(self) -> int:
        """The highest journal sequence whose events are in the outbox (as alerts, or as
        nothing to say): the notifier replays the journal after it on start."""
        rows = list(await self.db.conn.execute_fetchall(_READ_CHECKPOINT))
        return int(rows[0][0])

    async def get(self, row_id: int) -> OutboxRow | None:
        rows = list(await self.db.conn.execute_fetchall(
            "SELECT * FROM outbox WHERE id = ?", (row_id,)))
        return _row(rows[0]) if rows else None

    async def due(self, now: datetime, limit: int = 100) -> list[OutboxRow]:
        """Pending alerts whose time has come: critical first, then the order they were
        raised."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY priority DESC, id LIMIT ?", (to_text(now), limit))
        return [_row(r) for r in rows]

    async def due_chats(self, now: datetime) -> list[DueChat]:
        """Chats with alerts due, those with a critical alert first, then the one whose
        oldest alert is oldest: one summary row per chat, so a chat's backlog costs the others
        nothing."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT chat_id, MAX(priority), MIN(id) FROM outbox"
            " WHERE status = 'pending' AND next_attempt_at <= ? GROUP BY chat_id"
            " ORDER BY MAX(priority) DESC, MIN(id)", (to_text(now),))
        return [DueChat(r[0], Priority(r[1]), r[2]) for r in rows]

    async def due_for_chat(self, chat_id: int, now: datetime, limit: int) -> list[OutboxRow]:
        """One chat's due alerts, critical first, then in the order they were raised."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT * FROM outbox WHERE status = 'pending' AND chat_id = ?"
            " AND next_attempt_at <= ? ORDER BY priority DESC, id LIMIT ?",
            (chat_id, to_text(now), limit))
        return [_row(r) for r in rows]

    async def pending(self, chat_id: int | None = None) -> list[OutboxRow]:
        sql, args = "SELECT * FROM outbox WHERE status = 'pending'", ()
        if chat_id is not None:
            sql, args = sql + " AND chat_id = ?", (chat_id,)
        rows = await self.db.conn.execute_fetchall(sql + " ORDER BY id", args)
        return [_row(r) for r in rows]

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending alert is due (None when nothing is pending)."""
        rows = list(await self.db.conn.execute_fetchall(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'"))
        return _optional(rows[0][0]) if rows else None

    async def pending_count(self, chat_id: int | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM outbox WHERE status = 'pending'", ()
        if chat_id is not None:
            sql, args = sql + " AND chat_id = ?", (chat_id,)
        rows = list(await self.db.conn.execute_fetchall(sql, args))
        return int(rows[0][0]) if rows else 0

    async def oldest_pending_at(self) -> datetime | None:
        """When the oldest alert still waiting was written (None when nothing waits)."""
        rows = list(await self.db.conn.execute_fetchall(
            "SELECT MIN(created_at) FROM outbox WHERE status = 'pending'"))
        return _optional(rows[0][0]) if rows else None

    async def mark_sent(self, row_id: int, *, now: datetime, count: int | None = None) -> bool:
        """Record delivery of `count` occurrences (all of them when None).

        Repeats that coalesced into the row while it was being sent were not in the message:
        they stay pending (count reduced by what was delivered). Returns True when the row is
        now sent, False when repeats remain pending.
        """
        if count is not None:
            cur = await self.db.conn.execute(
                "UPDATE outbox SET count = count - ? WHERE id = ? AND status = 'pending'"
                " AND count > ?", (count, row_id, count))
            if cur.rowcount:
                await self.db.conn.commit()
                return False
        await self.db.conn.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, last_error = NULL"
            " WHERE id = ? AND status = 'pending'", (to_text(now), row_id))
        await self.db.conn.commit()
        return True

    async def reschedule(self, row_id: int, at: datetime, error: str) -> None:
        """A failed attempt: try again at `at`."""
        await self.db.conn.execute(
            "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1, last_error = ?"
            " WHERE id = ? AND status = 'pending'", (to_text(at), error, row_id))
        await self.db.conn.commit()

    async def hold_chat(self, chat_id: int, until: datetime) -> int:
        """Nothing for this chat goes before `until` (its pending alerts due earlier wait)."""
        at = to_text(until)
        cur = await self.db.conn.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE chat_id = ? AND status = 'pending'"
            " AND next_attempt_at < ?", (at, chat_id, at))
        await self.db.conn.commit()
        return cur.rowcount

    async def drop(self, row_id: int, reason: str) -> None:
        """Give up on one alert (kept with the reason, for the record)."""
        await self.db.conn.execute(
            "UPDATE outbox SET status = 'dropped', last_error = ? WHERE id = ? AND status = ?",
            (reason, row_id, PENDING))
        await self.db.conn.commit()

    async def drop_chat(self, chat_id: int, reason: str) -> int:
        """Give up on every pending alert for a chat; return how many."""
        cur = await self.db.conn.execute(
            "UPDATE outbox SET status = 'dropped', last_error = ?"
            " WHERE chat_id = ? AND status = 'pending'", (reason, chat_id))
        await self.db.conn.commit()
        return cur.rowcount

    async def drop_stale_routine(self, before: datetime, reason: str,
                                 keep_key: str) -> dict[int, int]:
        """Drop pending routine alerts raised before `before` (never critical ones, nor the
        row keyed `keep_key`, the note that counts what was dropped); return how many per
        chat."""
        rows = await self.db.conn.execute_fetchall(
            "UPDATE outbox SET status = 'dropped', last_error = ? WHERE status = 'pending'"
            " AND priority = ? AND created_at < ? AND dedupe_key IS NOT ?"
            " RETURNING chat_id, count",
            (reason, int(Priority.ROUTINE), to_text(before), keep_key))
        await self.db.conn.commit()
        dropped: Counter[int] = Counter()
        for r in rows:
            dropped[r[0]] += r[1]
        return dict(dropped)

    async def move_chat(self, old_chat_id: int, new_chat_id: int) -> int:
        """Re-address pending alerts (a group that became a supergroup has a new id); one that
        is already pending for the new chat is dropped as a duplicate."""
        cur = await self.db.conn.execute(
            "UPDATE OR IGNORE outbox SET chat_id = ? WHERE chat_id = ? AND status = 'pending'",
            (new_chat_id, old_chat_id))
        moved = cur.rowcount
        await self.db.conn.execute(
            "UPDATE outbox SET status = 'dropped', last_error = ?"
            " WHERE chat_id = ? AND status = 'pending'",
            (f"duplicate of an alert pending for chat {new_chat_id}", old_chat_id))
        await self.db.conn.commit()
        return moved

    async def prune(self, before: datetime) -> int:
        """Forget delivered and dropped alerts raised before `before` (the checkpoint they
        carry moves to the checkpoint row first, in the same transaction)."""
        await self.db.conn.execute(
            "UPDATE outbox_checkpoint SET journal_seq = MAX(journal_seq,"
            " COALESCE((SELECT MAX(journal_seq) FROM outbox), 0))")
        cur = await self.db.conn.execute(
            "DELETE FROM outbox WHERE status != 'pending' AND created_at < ?", (to_text(before),))
        await self.db.conn.commit()
        return cur.rowcount

    async def strangers_known(self, user_ids: Iterable[int]) -> set[int]:
        ids = list(user_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = await self.db.conn.execute_fetchall(
            f"SELECT user_id FROM reported_strangers WHERE user_id IN ({marks})", ids)
        return {r[0] for r in rows}

    async def remember_strangers(self, user_ids: Iterable[int], *, now: datetime,
                                 keep: int) -> None:
        """Record strangers as reported, keeping only the `keep` most recent (the set stays
        bounded however many strangers write)."""
        at = to_text(now)
        await self.db.conn.executemany(
            "INSERT INTO reported_strangers (user_id, reported_at) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET reported_at = excluded.reported_at",
            [(user_id, at) for user_id in user_ids])
        await self.db.conn.execute(
            "DELETE FROM reported_strangers WHERE user_id NOT IN (SELECT user_id FROM"
            " reported_strangers ORDER BY reported_at DESC, rowid DESC LIMIT ?)", (keep,))
        await self.db.conn.commit()
