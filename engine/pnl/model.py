"""Ledger values the PnL code shares with storage, and the store it needs (a port, so the engine
does not import storage: storage/ledger.py implements it on SQLite)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from typing import Protocol

from engine.domain.ledger import LedgerEntry, LedgerKind
from engine.domain.pnl import DayTotals, NetPnl

# symbol (None: not tied to one market) -> kind -> total
LedgerSums = dict[str | None, dict[LedgerKind, Decimal]]

__all__ = ["DayTotals", "LedgerStore", "LedgerSums", "NetPnl", "local_midnight"]


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The first instant of a local calendar day, in UTC (zoneinfo resolves DST)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


class LedgerStore(Protocol):
    async def add(self, account: str, entries: Iterable[LedgerEntry]) -> int: ...

    async def sums(self, account: str, since: datetime, until: datetime) -> LedgerSums: ...

    async def daily(self, account: str, days: int, tz: tzinfo,
                    now: datetime) -> list[DayTotals]: ...

    async def last_at(self, account: str) -> datetime | None: ...
