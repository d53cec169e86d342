"""The ledger: realized PnL, fees and funding per account, as the venues reported them.

Amounts are Decimal text and are summed in Python (SQLite's SUM would go through floats). Times
are fixed-width UTC text (`2026-01-05T12:00:00.000000Z`), so comparing the text compares the
times. Every statement runs to completion in one call: the connection is shared (see outbox.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal

from engine.domain.ledger import LedgerEntry, LedgerKind
from engine.domain.values import ZERO
from engine.pnl.model import DayTotals, LedgerSums, local_midnight
from storage.db import Database
from storage.times import from_text, to_text


class LedgerRepo:
    """engine.pnl.model.LedgerStore on SQLite."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, account: str, entries: Iterable[LedgerEntry]) -> int:
        """Store entries not seen before (by ref); return how many were new."""
        rows = [(account, e.ref, e.symbol, LedgerKind(e.kind).value, str(e.amount), to_text(e.at))
                for e in entries]
        if not rows:
            return 0
        cur = await self.db.conn.executemany(
            "INSERT OR IGNORE INTO ledger (account, ref, symbol, kind, amount, at)"
            " VALUES (?, ?, ?, ?, ?, ?)", rows)
        added = max(cur.rowcount, 0)
        await cur.close()
        await self.db.conn.commit()
        return added

    async def entries(self, account: str, since: datetime, until: datetime) -> list[LedgerEntry]:
        """Entries with since <= at < until, oldest first."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT ref, symbol, kind, amount, at FROM ledger WHERE account = ? AND at >= ?"
            " AND at < ? ORDER BY at, ref", (account, to_text(since), to_text(until)))
        return [LedgerEntry(ref=r["ref"], symbol=r["symbol"], kind=LedgerKind(r["kind"]),
                            amount=Decimal(r["amount"]), at=from_text(r["at"])) for r in rows]

    async def sums(self, account: str, since: datetime, until: datetime) -> LedgerSums:
        """Totals per symbol and kind for since <= at < until."""
        totals: LedgerSums = {}
        for entry in await self.entries(account, since, until):
            per_kind = totals.setdefault(entry.symbol, {})
            per_kind[entry.kind] = per_kind.get(entry.kind, ZERO) + entry.amount
        return totals

    async def daily(self, account: str, days: int, tz: tzinfo, now: datetime) -> list[DayTotals]:
        """The last `days` local calendar days up to and including today (in `tz`), oldest
        first; a day with no movement is there with zeros."""
        if days < 1:
            return []
        today = now.astimezone(tz).date()
        first = today - timedelta(days=days - 1)
        buckets: dict[date, dict[LedgerKind, Decimal]] = {
            first + timedelta(days=i): {} for i in range(days)}
        until = local_midnight(today + timedelta(days=1), tz)
        for entry in await self.entries(account, local_midnight(first, tz), until):
            bucket = buckets.get(entry.at.astimezone(tz).date())
            if bucket is not None:
                bucket[entry.kind] = bucket.get(entry.kind, ZERO) + entry.amount
        return [DayTotals(day, k.get(LedgerKind.REALIZED_PNL, ZERO), k.get(LedgerKind.FEE, ZERO),
                          k.get(LedgerKind.FUNDING, ZERO)) for day, k in buckets.items()]

    async def last_at(self, account: str) -> datetime | None:
        """When the newest stored movement of the account happened (None: nothing stored)."""
        rows = list(await self.db.conn.execute_fetchall(
            "SELECT MAX(at) FROM ledger WHERE account = ?", (account,)))
        return from_text(rows[0][0]) if rows and rows[0][0] else None
