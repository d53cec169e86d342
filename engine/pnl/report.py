"""What a PnL report says, computed from ledger sums and open positions: pure functions and
frozen dataclasses, no I/O (engine/pnl/service.py gathers the inputs).

Net = realized + fees + funding (fees are negative when paid, funding positive when received).
Unrealized PnL is what the open positions show now; it is not part of net.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal

from engine.domain.ledger import LedgerKind
from engine.domain.pnl import AccountPnl, DailyReport, DayTotals, SymbolPnl
from engine.domain.values import ZERO
from engine.pnl.model import LedgerSums, local_midnight

CURRENCY = "USDT"  # every account we guard settles in USDT

__all__ = ["AccountPnl", "DailyReport", "SymbolPnl", "account_pnl", "calendar_period"]


def calendar_period(now: datetime, tz: tzinfo, days: int) -> tuple[datetime, datetime]:
    """`days` local calendar days up to now: today since midnight for 1, and so on."""
    if days < 1:
        raise ValueError("days must be at least 1")
    first = now.astimezone(tz).date() - timedelta(days=days - 1)
    return local_midnight(first, tz).astimezone(tz), now.astimezone(tz)


def account_pnl(account: str, venue: str, sums: LedgerSums,
                unrealized: Iterable[tuple[str, Decimal]], daily: Sequence[DayTotals], *,
                error: str | None = None, currency: str = CURRENCY) -> AccountPnl:
    """One account's figures from its ledger sums and its open positions' (symbol, PnL)."""
    open_pnl: dict[str, Decimal] = {}
    for symbol, pnl in unrealized:
        open_pnl[symbol] = open_pnl.get(symbol, ZERO) + pnl
    rows = []
    for symbol in sorted(set(sums) | set(open_pnl), key=lambda s: (s is None, s or "")):
        kinds = sums.get(symbol, {})
        rows.append(SymbolPnl(symbol, kinds.get(LedgerKind.REALIZED_PNL, ZERO),
                              kinds.get(LedgerKind.FEE, ZERO), kinds.get(LedgerKind.FUNDING, ZERO),
                              open_pnl.get(symbol, ZERO) if symbol is not None else ZERO))
    return AccountPnl(
        account=account, venue=venue, currency=currency,
        realized=sum((r.realized for r in rows), ZERO), fees=sum((r.fees for r in rows), ZERO),
        funding=sum((r.funding for r in rows), ZERO),
        unrealized=sum((r.unrealized for r in rows), ZERO), symbols=tuple(rows),
        daily=tuple(daily), error=error)
