"""Mark-price ticks over ccxt pro: one watch call for all guarded symbols (Binance's mark-price
stream, Bybit's and Bitget's tickers), converted to PriceTick, failures as engine errors. The
real exchange classes; only their websocket watch call is scripted."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt
import pytest

from engine.domain.reports import PriceTick
from engine.errors import Transient
from tests.venues.conftest import build

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.mark.parametrize(("venue", "method"), [
    ("binance", "watch_mark_prices"), ("bybit", "watch_tickers"), ("bitget", "watch_tickers")])
async def test_one_watch_call_for_all_symbols_becomes_ticks(venue: str, method: str) -> None:
    h = await build(venue)
    calls: list[list[str]] = []
    answers: list[Any] = [
        {BTC: {"symbol": BTC, "markPrice": 65000.5, "last": 64990},
         ETH: {"symbol": ETH, "markPrice": "3200.25"},
         "SOL/USDT:USDT": {"symbol": "SOL/USDT:USDT", "markPrice": 150}},  # not asked for
        {BTC: {"symbol": BTC, "markPrice": None, "last": 65010}},  # no mark: skipped
        ccxt.NetworkError("socket closed"),
    ]

    async def watch(symbols: list[str], params: dict | None = None) -> dict[str, Any]:
        calls.append(list(symbols))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    setattr(h.venue.exchange, method, watch)
    batches: list[tuple[PriceTick, ...]] = []
    with pytest.raises(Transient):
        async for batch in h.venue.price_ticks(frozenset({BTC, ETH})):
            batches.append(batch)
    assert calls == [[BTC, ETH]] * 3  # one subscription carries every guarded symbol
    [batch] = batches
    assert {(t.symbol, t.mark) for t in batch} == {(BTC, Decimal("65000.5")),
                                                   (ETH, Decimal("3200.25"))}


async def test_no_symbols_no_subscription() -> None:
    h = await build("binance")
    assert [b async for b in h.venue.price_ticks(frozenset())] == []
