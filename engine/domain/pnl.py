"""What a PnL report says: frozen values, no I/O. Computed by engine/pnl, rendered by the chat.

Net = realized + fees + funding (fees are negative when paid, funding positive when received).
Unrealized PnL is what the open positions show now; it is not part of net.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from engine.domain.values import ZERO

MAX_REPORT_DAYS = 90  # the longest period /pnl covers


class NetPnl:
    """Net = realized + fees + funding (fees negative when paid, funding positive when
    received); unrealized PnL is not part of it."""

    __slots__ = ()
    realized: Decimal
    fees: Decimal
    funding: Decimal

    @property
    def net(self) -> Decimal:
        return self.realized + self.fees + self.funding


@dataclass(frozen=True, slots=True)
class DayTotals(NetPnl):
    """One local calendar day of an account: what the chart draws."""

    day: date
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class SymbolPnl(NetPnl):
    symbol: str | None  # None: movements not tied to one market
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    unrealized: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class AccountPnl(NetPnl):
    account: str
    venue: str
    currency: str
    realized: Decimal
    fees: Decimal
    funding: Decimal
    unrealized: Decimal  # open positions, now
    symbols: tuple[SymbolPnl, ...]
    daily: tuple[DayTotals, ...]  # the chart: one row per local day, oldest first
    error: str | None = None  # the ledger could not be updated: figures may be incomplete


@dataclass(frozen=True, slots=True)
class DailyReport:
    start: datetime  # in the report's time zone
    end: datetime
    tz: str
    accounts: tuple[AccountPnl, ...]

    @property
    def net(self) -> Decimal:
        return sum((a.net for a in self.accounts), ZERO)
