"""Small repositories over the state and positions tables. Decimals are stored as TEXT."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from engine.domain.position import GuardedPosition, PositionState, StopRef
from engine.domain.values import PositionSide
from storage.db import Database
from storage.times import to_text


def _iso(value: datetime | None) -> str | None:
    return to_text(value) if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _dec(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


# Read for every alert and every chat (the chat's language); written only through StateRepo
# (/lang, the language Telegram reports), so a per-database cache stays true.
CACHED_SCOPES = frozenset({"lang", "tg_lang"})
_ABSENT = object()


class StateRepo:
    """JSON values by (scope, key): HOLD state per account, per-user language, counters."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, scope: str, key: str, default: Any = None) -> Any:
        cached = scope in CACHED_SCOPES
        if cached and (scope, key) in self.db.state_cache:
            value = self.db.state_cache[(scope, key)]
            return default if value is _ABSENT else value
        rows = await self.db.conn.execute_fetchall(
            "SELECT value FROM state WHERE scope = ? AND key = ?", (scope, key))
        if cached:  # a put that landed while we read has the newer value: keep it
            self.db.state_cache.setdefault((scope, key),
                                           json.loads(rows[0][0]) if rows else _ABSENT)
        return json.loads(rows[0][0]) if rows else default

    async def put(self, scope: str, key: str, value: Any) -> None:
        await self.db.conn.execute(
            "INSERT INTO state (scope, key, value, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (scope, key, json.dumps(value), to_text(datetime.now(UTC))))
        await self.db.conn.commit()
        if scope in CACHED_SCOPES:
            self.db.state_cache[(scope, key)] = json.loads(json.dumps(value))  # as get reads it

    async def incr(self, scope: str, key: str) -> int:
        """Atomically add one to a persisted counter and return the new value."""
        if scope in CACHED_SCOPES:
            self.db.state_cache.pop((scope, key), None)
        # One round trip to SQLite's thread: an INSERT ... RETURNING left open between fetchone
        # and close is a write in progress, and any other coroutine's commit on the shared
        # connection then fails ("cannot commit transaction - SQL statements in progress").
        rows = await self.db.conn.execute_fetchall(
            "INSERT INTO state (scope, key, value, updated_at) VALUES (?, ?, '1', ?)"
            " ON CONFLICT (scope, key) DO UPDATE SET value = CAST(value AS INTEGER) + 1,"
            " updated_at = excluded.updated_at RETURNING value",
            (scope, key, to_text(datetime.now(UTC))))
        await self.db.conn.commit()
        row = next(iter(rows), None)
        return int(row[0]) if row else 1


class PositionRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, p: GuardedPosition) -> None:
        stop = p.stop
        await self.db.conn.execute(
            "INSERT OR REPLACE INTO positions (account, symbol, side, qty, entry_price, generation,"
            " state, stop_order_id, stop_client_id, stop_price, stop_qty, stop_seq, close_seq,"
            " opened_at, unprotected_since, last_time_to_protect)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (p.account, p.symbol, p.side.value, str(p.qty), str(p.entry_price), p.generation,
             p.state.value, stop.order_id if stop else None, stop.client_id if stop else None,
             str(stop.trigger_price) if stop else None,
             str(stop.qty) if stop and stop.qty is not None else None, p.stop_seq, p.close_seq,
             _iso(p.opened_at), _iso(p.unprotected_since),
             str(p.last_time_to_protect) if p.last_time_to_protect is not None else None))
        await self.db.conn.commit()

    async def delete(self, account: str, symbol: str) -> None:
        await self.db.conn.execute(
            "DELETE FROM positions WHERE account = ? AND symbol = ?", (account, symbol))
        await self.db.conn.commit()

    async def load(self, account: str) -> list[GuardedPosition]:
        rows = await self.db.conn.execute_fetchall(
            "SELECT * FROM positions WHERE account = ? ORDER BY symbol", (account,))
        result = []
        for r in rows:
            stop = None
            if r["stop_order_id"]:
                stop = StopRef(r["stop_order_id"], r["stop_client_id"], Decimal(r["stop_price"]),
                               _dec(r["stop_qty"]))
            result.append(GuardedPosition(
                account=r["account"], symbol=r["symbol"], side=PositionSide(r["side"]),
                qty=Decimal(r["qty"]), entry_price=Decimal(r["entry_price"]),
                generation=r["generation"], state=PositionState(r["state"]), stop=stop,
                stop_seq=r["stop_seq"], close_seq=r["close_seq"], opened_at=_dt(r["opened_at"]),
                unprotected_since=_dt(r["unprotected_since"]),
                last_time_to_protect=_dec(r["last_time_to_protect"])))
        return result
