"""Venue ledger rows (income, transaction log, bills) -> our LedgerEntry.

ccxt's unified `fetch_ledger` is not used: it reports an absolute amount with a direction, files
Binance funding under 'fee' with commissions, drops the symbol, and reads only one of the fee,
funding and cash-flow fields that one Bybit row carries. The dialects call each venue's endpoint
through ccxt's implicit API instead and map the raw rows here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from engine.domain.ledger import LedgerEntry, LedgerKind
from engine.venues.convert import dec, utc_from_ms

Raw = dict[str, Any]


def to_ms(value: datetime) -> int:
    return int(value.astimezone(UTC).timestamp() * 1000)


def windows(since_ms: int, until_ms: int, span_ms: int) -> Iterator[tuple[int, int]]:
    """[start, end] windows no longer than `span_ms` covering since..until. Neighbours share
    their edge millisecond (whether a venue's end bound is inclusive or not, nothing falls
    between two windows); entries seen twice are dropped by ref."""
    start = since_ms
    while True:
        end = min(start + span_ms, until_ms)
        yield start, end
        if end >= until_ms:
            return
        start = end


def entry(ref: str, symbol: str | None, kind: LedgerKind, amount: object, at_ms: object,
          *, negate: bool = False) -> LedgerEntry | None:
    """A ledger entry from raw venue fields; None when the amount is zero, missing or garbage,
    or the time is missing (such a row moved no money we can place)."""
    value = dec(amount)
    at = utc_from_ms(at_ms)
    if not value or at is None:
        return None
    return LedgerEntry(ref=ref, symbol=symbol, kind=kind, amount=-value if negate else value,
                       at=at)


def unified_symbol(exchange: Any, market_id: object) -> str | None:
    """BTCUSDT -> BTC/USDT:USDT (the loaded perpetual); an unknown id stays as it is."""
    if not market_id:
        return None
    market = exchange.safe_market(str(market_id), None, None, "swap")
    return str(market.get("symbol") or market_id)


def tidy(entries: Iterable[LedgerEntry], since: datetime) -> list[LedgerEntry]:
    """At or after `since`, each ref once, oldest first."""
    seen: dict[str, LedgerEntry] = {}
    for item in entries:
        if item.at >= since:
            seen.setdefault(item.ref, item)
    return sorted(seen.values(), key=lambda e: (e.at, e.ref))
