"""Mark-price ticks over ccxt pro: one watch call for every guarded symbol.

Binance USD-M has a mark-price stream (`watch_mark_prices`, one socket for all symbols); Bybit and
Bitget carry the mark price in their ticker stream (`watch_tickers`). A dialect with neither has no
tick stream: the guard then prices from its snapshots' marks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from engine.domain.reports import PriceTick
from engine.venues.convert import dec

Raw = dict[str, Any]


class MarkWatcher(Protocol):
    """The seam tests replace: one ccxt pro watch call returning tickers by symbol."""

    def supported(self) -> bool: ...

    async def __call__(self, symbols: list[str]) -> dict[str, Raw]: ...


class ExchangeMarkWatcher:
    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange

    def supported(self) -> bool:
        has = getattr(self._exchange, "has", {}) or {}
        return bool(has.get("watchMarkPrices") or has.get("watchTickers"))

    async def __call__(self, symbols: list[str]) -> dict[str, Raw]:
        if self._exchange.has.get("watchMarkPrices"):
            return dict(await self._exchange.watch_mark_prices(symbols) or {})
        return dict(await self._exchange.watch_tickers(symbols) or {})


def mark_ticks(tickers: dict[str, Raw], symbols: frozenset[str], now: datetime
               ) -> tuple[PriceTick, ...]:
    """Unified ccxt tickers -> ticks of the symbols asked; a ticker without a usable mark price
    (a last-price-only update) is skipped, never guessed from the last trade."""
    ticks = []
    for symbol, raw in tickers.items():
        mark = dec(raw.get("markPrice"))
        if symbol in symbols and mark is not None and mark > 0:
            ticks.append(PriceTick(symbol, mark, now))
    return tuple(ticks)


async def watch_marks(watcher: MarkWatcher, symbols: frozenset[str], now: Callable[[], datetime],
                      translate: Callable[[Exception], Exception],
                      pause: Callable[[], Awaitable[None]]) -> AsyncIterator[tuple[PriceTick, ...]]:
    """Batches of ticks until the caller stops iterating. A failed watch raises the translated
    (engine.errors) error: the caller's loop reconnects and the snapshots carry prices meanwhile."""
    if not symbols or not watcher.supported():
        return
    wanted = sorted(symbols)
    while True:
        try:
            tickers = await watcher(wanted)
        except Exception as exc:  # CancelledError passes: it is a BaseException
            raise translate(exc) from exc
        ticks = mark_ticks(tickers, symbols, now())
        if ticks:
            yield ticks
        await pause()  # a watcher that answers at once must not starve the loop
