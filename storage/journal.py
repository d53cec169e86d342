"""Append-only event journal; each row carries hash = H(prev_hash || canonical row).

Group commit: `append` gives an event its id and hash at once, in call order (so the chain is the
order of the calls), and queues the row. Batches go to the database connection's thread in
order, each written in one transaction: a full batch (`batch_size` rows) at once from `append`,
without waiting for the loop to yield, so SQLite writes it while the loop goes on; what is left
when the writer task runs (at once when an intent or a reader is waiting, otherwise after
`linger` seconds). A batch behind one that failed is refused, never written: the chain has no
holes.

Durability: by default `append` returns once the row is committed. With `background=True` (the
runtime) only an event marked `durable` waits for its batch to commit (the intents: the engine
calls the venue only after they are written); any other returns once queued. A crash can then
lose only the non-intent rows appended after the last committed batch (the open batch and the
batches handed to the thread but not yet committed), and the engine has not acted on any of
them. `rows` and `verify` flush first, so this process always reads its own writes;
`Database.close` flushes too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gzip
import hashlib
import json
import os
import sqlite3
import time
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from itertools import chain
from json.encoder import encode_basestring  # json.dumps' own string encoder (ensure_ascii=False)
from pathlib import Path
from typing import Any

from loguru import logger

from engine.bus import Published
from engine.domain.events import Event, _encode, event_from_payload
from storage.db import Database
from storage.repositories import StateRepo
from storage.times import to_text

GENESIS = "0" * 64
VERIFY_PAGE = 5000
MAX_BATCH = 4000  # 7 parameters a row: 28,000 in one statement (SQLite allows 32,766)
# Under load a batch fills before the loop yields; 4,000 rows keep the writer thread's GIL
# hand-overs (each up to the 5 ms switch interval while the loop is busy) rare enough for it to
# keep up with appends. Without load the writer sends what is queued whenever it runs.
BATCH_SIZE = MAX_BATCH

_INSERT = ("INSERT INTO journal (id, at, account, kind, payload, prev_hash, hash)"
           " VALUES (?, ?, ?, ?, ?, ?, ?)")
Row = tuple[int, str, str, str, str, str, str]  # id, at, account, kind, payload, prev, hash


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# canonical(event.payload()) without the payload dict, the sort and a json callback per Decimal:
# this runs once per event on the publisher's path. Each event class gets a small function
# (compiled once, as dataclasses does for __init__) that joins its fields in sorted key order;
# a field of an unexpected type falls back to the same encoding as Event.payload(). Times are
# storage.times text (fixed-width UTC, as every other table stores them; rows written before
# 2026-12 keep their isoformat text, which the chain hashed). Equality with that payload is
# tested for every event type (test_journal_group_commit.py).
def _decimal(value: Decimal) -> str:
    return f'"{value}"'  # digits, sign, point, exponent: nothing JSON escapes


_last_at: list[Any] = [None, ""]  # the last time formatted and its text


def _at_text(value: datetime) -> str:
    # Events published together often carry the same instant (one clock reading): format once.
    if value is not _last_at[0]:
        _last_at[1] = to_text(value)
        _last_at[0] = value
    return _last_at[1]  # type: ignore[no-any-return]


def _datetime(value: datetime) -> str:
    return f'"{to_text(value)}"'


def _other(value: Any) -> str:
    return json.dumps(_encode(value), ensure_ascii=False)  # enums, anything else: as payload()


_FIELD_TEXT: dict[type, Callable[[Any], str]] = {
    str: encode_basestring, Decimal: _decimal, datetime: _datetime, int: str,
    bool: lambda v: "true" if v else "false", type(None): lambda v: "null",
}


def _field_text(value: Any) -> str:
    return _FIELD_TEXT.get(type(value), _other)(value)


_FAST = {str: "_es(v{i}) if type(v{i}) is str else _text(v{i})",
         Decimal: "'\"' + str(v{i}) + '\"' if type(v{i}) is _D else _text(v{i})"}


def _compile_text(cls: type[Event]) -> Callable[[Event, str], str]:
    hints = typing.get_type_hints(cls)
    lines, pieces = ["def text(e, at):"], []
    for i, name in enumerate(sorted(f.name for f in dataclasses.fields(cls))):
        pieces.append(repr(("{" if i == 0 else ",") + encode_basestring(name) + ":"))
        if name == "at":
            pieces.append("'\"' + at + '\"'")
            continue
        lines.append(f"    v{i} = e.{name}")
        base = [a for a in typing.get_args(hints[name]) if a is not type(None)] or [hints[name]]
        pieces.append("(" + _FAST.get(base[0], "_text(v{i})").format(i=i) + ")")
    lines.append("    return " + " + ".join([*pieces, "'}'"]))
    namespace = {"_es": encode_basestring, "_D": Decimal, "_text": _field_text}
    exec("\n".join(lines), namespace)  # source built from field names and constants only
    return namespace["text"]  # type: ignore[no-any-return]


_TEXT: dict[type[Event], Callable[[Event, str], str]] = {}


def payload_text(event: Event) -> tuple[str, str]:
    """(at, canonical payload text) of an event: canonical(event.payload()), times as to_text."""
    text = _TEXT.get(type(event))
    if text is None:
        text = _TEXT[type(event)] = _compile_text(type(event))
    at = _at_text(event.at)
    return at, text(event, at)


_HASH_TEXT: dict[tuple[str, str], tuple[str, str]] = {}  # (account, kind): the constant parts


def chain_hash(prev_hash: str, at: str, account: str, kind: str, payload: str) -> str:
    # The same text as canonical({"at", "account", "kind", "payload"}) (keys sorted), built
    # without a dict and a sort: this runs once per event on the publisher's path. The parts
    # around `at` are the same for every event of an account and kind, so they are built once.
    parts = _HASH_TEXT.get((account, kind))
    if parts is None:
        parts = _HASH_TEXT[(account, kind)] = (
            f'{{"account":{encode_basestring(account)},"at":',
            f',"kind":{encode_basestring(kind)},"payload":')
    body = parts[0] + encode_basestring(at) + parts[1] + encode_basestring(payload) + "}"
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


class JournalWriteError(RuntimeError):
    """A batch could not be written: it and every row queued after it are lost."""


@functools.lru_cache(maxsize=4)
def _insert_many(rows: int) -> str:
    return _INSERT + ",(?, ?, ?, ?, ?, ?, ?)" * (rows - 1)


class _Generation:
    """Shared with the connection's thread: the batches queued after one that failed chain on
    rows that were never written, so they are refused, not written (the chain stays whole)."""

    def __init__(self) -> None:
        self.failed = -1


def _insert_batch(rows: list[Row], full: bool, generation: int, state: _Generation,
                  conn: sqlite3.Connection) -> None:
    """On the connection's thread. A full batch (the load case) is one multi-row INSERT: one
    sqlite3_step, so this thread gives up the GIL once while SQLite works, in parallel with the
    event loop (`executemany` takes the GIL back after every row, and with the loop busy each
    of those waits out the switch interval). With no transaction open on the shared
    connection it runs in autocommit: SQLite begins and commits inside that same step. Inside
    one, a savepoint takes back only our rows on failure, not other tasks' statements."""
    if state.failed == generation:
        raise JournalWriteError("an earlier batch of this chain failed")
    try:
        if full and not conn.in_transaction:
            level, conn.isolation_level = conn.isolation_level, None
            try:
                conn.execute(_insert_many(len(rows)), list(chain.from_iterable(rows)))
            finally:
                conn.isolation_level = level
            return
        if not conn.in_transaction:  # a plain transaction: two statements fewer per batch
            try:
                conn.executemany(_INSERT, rows)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return
        conn.execute("SAVEPOINT journal_batch")
        try:
            conn.executemany(_INSERT, rows)
        except BaseException:
            conn.execute("ROLLBACK TO journal_batch")
            conn.execute("RELEASE journal_batch")
            raise
        conn.execute("RELEASE journal_batch")
        conn.commit()
    except BaseException:
        state.failed = generation
        raise


@dataclass(frozen=True, slots=True)
class JournalRow:
    id: int
    at: str
    account: str
    kind: str
    payload: dict[str, Any]
    hash: str

    def event(self) -> Event:
        return event_from_payload(self.kind, self.payload)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    rows: int
    broken_id: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    path: Path | None  # None: nothing was old enough
    rows: int
    anchor: str  # the hash the live chain now starts from


class ChainWalk:
    """Checks rows (id, at, account, kind, payload, prev_hash, hash) one after another."""

    def __init__(self, prev: str) -> None:
        self.prev = prev
        self.count = 0

    def broken(self, row: tuple[Any, ...]) -> VerifyResult | None:
        row_id, at, account, kind, payload, prev_hash, digest = row
        self.count += 1
        if prev_hash != self.prev:
            return VerifyResult(False, self.count, row_id, "prev_hash does not link")
        if chain_hash(self.prev, at, account, kind, payload) != digest:
            return VerifyResult(False, self.count, row_id, "hash does not match contents")
        self.prev = digest
        return None


ANCHOR = ("journal", "anchor")  # state: {"last_id", "hash", "archive"} of the last archived row


class Journal:
    def __init__(self, db: Database, *, background: bool = False,
                 batch_size: int = BATCH_SIZE, linger: float = 0.0) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH}, got {batch_size}")
        if linger < 0:
            raise ValueError(f"linger must be 0 or more seconds, got {linger}")
        self.db = db
        self.background = background  # only durable events wait for their commit
        self.batch_size = batch_size
        self.linger = linger  # real seconds a batch waits for more rows when nobody waits on it
        self.batches = 0  # batches committed
        self.write_error: str | None = None  # the last batch failed (cleared by the next commit)
        self.on_commit: Callable[[float, int], None] | None = None  # (seconds, rows) per batch
        self._lock = asyncio.Lock()
        self._tail: tuple[int, str] | None = None  # id and hash of the last row handed out
        self._pending: list[Row] = []  # rows not yet handed to the connection's thread
        # batches handed to the thread, oldest first: (last row id, rows, when sent, result)
        self._inflight: deque[tuple[int, int, float, asyncio.Future[None]]] = deque()
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # by row id, ascending
        self._committed = 0  # highest row id committed by this journal
        self._generation = 0  # bumped when a batch fails: later batches of it are refused
        self._thread_state = _Generation()
        self._writer: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        db.before_close(self.flush)

    async def append(self, event: Event) -> int:
        """Queue the event; return once it is committed (in the background mode, once it is
        queued unless the event is durable)."""
        if self._tail is None:
            await self._load_tail()
        row_id = self._push(event)
        if event.durable or not self.background:
            await self._committed_through(row_id)
        return row_id

    async def committed(self, seq: int) -> None:
        """Return once every row up to `seq` is committed (the notifier writes an alert only
        for an event that is in the journal); raises `JournalWriteError` if its batch failed."""
        await self._committed_through(seq)

    async def events_after(self, seq: int, limit: int = VERIFY_PAGE
                           ) -> tuple[int, list[Published]]:
        """Up to `limit` events journaled after `seq`, decoded, in order, and the last id read
        (`seq` when there are none). A row this version cannot decode (an event kind it does
        not know) is logged and skipped."""
        events = []
        rows = await self.rows(since_id=seq, limit=limit)
        for row in rows:
            try:
                events.append(Published(row.id, row.event()))
            except (KeyError, TypeError, ValueError) as exc:
                logger.warning("journal row {} ({}) cannot be read back: {!r}", row.id, row.kind,
                               exc)
        return (rows[-1].id if rows else seq), events

    async def flush(self) -> None:
        """Return once every row appended so far is committed."""
        if self._tail is not None and (self._pending or self._inflight or self._writer):
            await self._committed_through(self._tail[0])

    async def _load_tail(self) -> None:
        async with self._lock:
            if self._tail is None:
                rows = await self.db.conn.execute_fetchall(
                    "SELECT id, hash FROM journal ORDER BY id DESC LIMIT 1")
                anchor = await self._anchor()
                self._tail = (rows[0][0], rows[0][1]) if rows and rows[0][0] > anchor[0] \
                    else anchor
                self._committed = self._tail[0]

    def _push(self, event: Event) -> int:
        assert self._tail is not None
        at, text = payload_text(event)
        last_id, last_hash = self._tail
        digest = chain_hash(last_hash, at, event.account, event.kind, text)
        row_id = last_id + 1
        self._pending.append((row_id, at, event.account, event.kind, text, last_hash, digest))
        self._tail = (row_id, digest)
        if len(self._pending) >= self.batch_size:
            # A full batch goes to the thread at once, even if the loop does not yield before
            # the next append: SQLite writes it while the loop builds the next rows.
            self._send()
            self._wake()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued(), name="journal writer")
        return row_id

    def _send(self) -> None:
        batch, self._pending = self._pending, []
        try:
            done = self.db.submit(partial(_insert_batch, batch, len(batch) == self.batch_size,
                                          self._generation, self._thread_state))
        except Exception as exc:  # the connection is closed: the writer fails the batch
            done = asyncio.get_running_loop().create_future()
            done.set_exception(exc)
        self._inflight.append((batch[-1][0], len(batch), time.perf_counter(), done))

    async def _committed_through(self, row_id: int) -> None:
        if row_id <= self._committed:
            return
        done = asyncio.get_running_loop().create_future()
        self._waiters.append((row_id, done))
        self._wake()  # someone waits: no lingering
        await done

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _linger(self) -> None:
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        timer = loop.call_later(self.linger, self._wake)
        try:
            await self._wakeup
        finally:
            timer.cancel()
            self._wakeup = None

    async def _write_queued(self) -> None:
        try:
            while self._pending or self._inflight:
                if self._pending:  # what was appended since the last batch went: send it too
                    if (self.linger and not self._waiters and not self._inflight
                            and len(self._pending) < self.batch_size):
                        await self._linger()
                    if self._pending:
                        self._send()
                last_id, count, sent, done = self._inflight[0]
                try:
                    await done
                except Exception as exc:
                    self._fail(exc)
                    return
                self._inflight.popleft()
                self.batches += 1
                self.write_error = None
                if self.on_commit is not None:
                    self.on_commit(time.perf_counter() - sent, count)
                self._committed = last_id
                resumed = False
                while self._waiters and self._waiters[0][0] <= self._committed:
                    _, waiter = self._waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(None)
                        resumed = True
                if resumed:  # let the writers just resumed queue their next rows: one batch
                    await asyncio.sleep(0)
        finally:
            self._writer = None

    def _fail(self, exc: Exception) -> None:
        first = self._committed + 1
        lost = (self._tail[0] if self._tail else first - 1) - first + 1
        for *_, done in self._inflight:  # refused by the thread: chained on the failed rows
            done.add_done_callback(_retrieve)
        self._inflight.clear()
        self._pending = []  # chained on rows that were never written
        self._generation += 1
        self._tail = None  # re-read the chain's end before the next append
        logger.opt(exception=exc).error(
            "journal write failed: {} rows lost (ids {}..{})", lost, first, first + lost - 1)
        error = JournalWriteError(f"journal write failed, {lost} rows lost: {exc}")
        self.write_error = str(error)
        while self._waiters:
            _, done = self._waiters.popleft()
            if not done.done():
                done.set_exception(error)

    async def rows(self, *, account: str | None = None, kinds: tuple[str, ...] = (),
                   since_id: int = 0, since_at: datetime | None = None,
                   limit: int = 1000) -> list[JournalRow]:
        await self.flush()
        sql = "SELECT id, at, account, kind, payload, hash FROM journal WHERE id > ?"
        args: list[Any] = [since_id]
        if since_at is not None:  # `at` is fixed-width UTC text: text order is time order
            sql += " AND at >= ?"
            args.append(to_text(since_at))
        if account is not None:
            sql += " AND account = ?"
            args.append(account)
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args.extend(kinds)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        rows = await self.db.conn.execute_fetchall(sql, args)
        return [JournalRow(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    async def verify(self) -> VerifyResult:
        """Walk the live chain from its anchor (the start, or the last archived row's hash);
        name the first row whose link or hash does not hold."""
        await self.flush()
        last_id, anchor = await self._anchor()
        walk = ChainWalk(anchor)
        while True:
            page = await self._page(last_id, None)
            if not page:
                return VerifyResult(True, walk.count)
            for row in page:
                if (broken := walk.broken(row)) is not None:
                    return broken
            last_id = page[-1][0]

    async def _page(self, after_id: int, through_id: int | None) -> list[tuple[Any, ...]]:
        """One page of whole rows, read to completion (no statement open across awaits)."""
        return list(await self.db.conn.execute_fetchall(
            "SELECT id, at, account, kind, payload, prev_hash, hash FROM journal"
            " WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (after_id, through_id if through_id is not None else 2**62, VERIFY_PAGE)))

    async def _anchor(self) -> tuple[int, str]:
        value = await StateRepo(self.db).get(*ANCHOR)
        return (int(value["last_id"]), str(value["hash"])) if value else (0, GENESIS)

    async def archive(self, before: datetime, directory: Path) -> ArchiveResult:
        """Move the chain's oldest rows, up to the first one at or after `before`, to a gzip
        file (a header with the anchor hash, then one JSON row a line) and out of the live
        table; the live chain then starts from the last archived row's hash. A broken segment
        is refused and nothing changes."""
        if before.tzinfo is None:
            raise ValueError(f"the archive cut-off must be timezone-aware: {before.isoformat()}")
        await self.flush()
        anchor_id, anchor = await self._anchor()
        bounds = await self.db.conn.execute_fetchall(
            "SELECT (SELECT MIN(id) FROM journal WHERE id > ? AND at >= ?),"
            " (SELECT MAX(id) FROM journal)",
            (anchor_id, to_text(before)))
        first_kept, last = bounds[0]
        through = first_kept - 1 if first_kept is not None else last
        if through is None or through <= anchor_id:
            return ArchiveResult(None, 0, anchor)
        walk, rows, after = ChainWalk(anchor), [], anchor_id
        while page := await self._page(after, through):
            for row in page:
                if (broken := walk.broken(row)) is not None:
                    raise ValueError(f"journal row {broken.broken_id} is broken "
                                     f"({broken.reason}): not archived")
            rows.extend(json.dumps(list(r), ensure_ascii=False) for r in page)
            after = page[-1][0]
        path = directory / f"journal-{anchor_id + 1:012d}-{through:012d}.jsonl.gz"
        header = {"anchor": anchor, "first_id": anchor_id + 1, "last_id": through,
                  "last_hash": walk.prev, "rows": walk.count}
        await asyncio.to_thread(_write_archive, path, header, rows)
        # The anchor first: if we stop before the delete, verify skips rows at or before it.
        await StateRepo(self.db).put(*ANCHOR, {"last_id": through, "hash": walk.prev,
                                               "archive": path.name})
        # In slices, each its own commit: intents queued meanwhile wait for one slice, not all.
        for start in range(anchor_id, through, VERIFY_PAGE):
            await self.db.run(partial(_delete_through, min(start + VERIFY_PAGE, through)))
        return ArchiveResult(path, walk.count, walk.prev)


def _retrieve(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()  # seen: asyncio need not log it as never retrieved


def _write_archive(path: Path, header: dict[str, Any], rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_suffix(".part")
    with gzip.open(partial_path, "wt", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n")
        out.writelines(row + "\n" for row in rows)
    with open(partial_path, "rb") as done:
        os.fsync(done.fileno())  # on disk before the rows leave the live table
    partial_path.replace(path)


def _delete_through(last_id: int, conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM journal WHERE id <= ?", (last_id,))
    conn.commit()


def verify_archive(path: Path) -> VerifyResult:
    """Walk an archive file's chain from its anchor to the last hash its header names."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        header = json.loads(next(lines))
        walk = ChainWalk(header["anchor"])
        for line in lines:
            if (broken := walk.broken(tuple(json.loads(line)))) is not None:
                return broken
    if walk.prev != header["last_hash"] or walk.count != header["rows"]:
        return VerifyResult(False, walk.count, None, "rows missing at the end of the archive")
    return VerifyResult(True, walk.count)
