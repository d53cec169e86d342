"""Append-only event journal; each row carries hash = H(prev_hash || canonical row)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.domain.events import Event, event_from_payload
from storage.db import Database

GENESIS = "0" * 64
VERIFY_PAGE = 5000


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, at: str, account: str, kind: str, payload: str) -> str:
    body = canonical({"at": at, "account": account, "kind": kind, "payload": payload})
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


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


class Journal:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = asyncio.Lock()
        self._last_hash: str | None = None

    async def append(self, event: Event) -> int:
        payload = event.payload()
        at, account = payload["at"], payload["account"]
        payload_text = canonical(payload)
        async with self._lock:
            if self._last_hash is None:
                rows = await self.db.conn.execute_fetchall(
                    "SELECT hash FROM journal ORDER BY id DESC LIMIT 1")
                self._last_hash = rows[0][0] if rows else GENESIS
            digest = chain_hash(self._last_hash, at, account, event.kind, payload_text)
            try:
                cur = await self.db.conn.execute(
                    "INSERT INTO journal (at, account, kind, payload, prev_hash, hash)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (at, account, event.kind, payload_text, self._last_hash, digest))
                await self.db.conn.commit()
            except Exception:
                # The row may still be committed later with the connection's transaction:
                # re-read the chain's end next time instead of trusting our cached hash.
                self._last_hash = None
                raise
            self._last_hash = digest
            return int(cur.lastrowid or 0)

    async def rows(self, *, account: str | None = None, kinds: tuple[str, ...] = (),
                   since_id: int = 0, since_at: datetime | None = None,
                   limit: int = 1000) -> list[JournalRow]:
        sql = "SELECT id, at, account, kind, payload, hash FROM journal WHERE id > ?"
        args: list[Any] = [since_id]
        if since_at is not None:  # `at` is ISO-8601 UTC text, so text order is time order
            sql += " AND at >= ?"
            args.append(since_at.astimezone(UTC).isoformat())
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
        """Walk the chain from the start; name the first row whose link or hash does not hold."""
        prev = GENESIS
        count = 0
        last_id = 0
        while True:  # in pages, each read to completion (no statement open across awaits)
            page = await self.db.conn.execute_fetchall(
                "SELECT id, at, account, kind, payload, prev_hash, hash FROM journal"
                " WHERE id > ? ORDER BY id LIMIT ?", (last_id, VERIFY_PAGE))
            if not page:
                return VerifyResult(True, count)
            for row_id, at, account, kind, payload, prev_hash, digest in page:
                count += 1
                if prev_hash != prev:
                    return VerifyResult(False, count, row_id, "prev_hash does not link")
                if chain_hash(prev, at, account, kind, payload) != digest:
                    return VerifyResult(False, count, row_id, "hash does not match contents")
                prev = digest
                last_id = row_id
