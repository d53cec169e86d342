"""Symbols and precision come from the markets ccxt loaded from each venue's raw answer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.reports import MarketInfo
from engine.errors import Rejected, RejectReason
from tests.venues import payloads as p
from tests.venues.conftest import Harness, build


@pytest.mark.parametrize("text", ["BTCUSDT", "BTC/USDT", "btc/usdt:usdt", " BTC-USDT ",
                                  "BTC/USDT:USDT"])
async def test_resolve_symbol_accepts_the_usual_spellings(venue: Harness, text: str) -> None:
    assert venue.venue.resolve_symbol(text) == "BTC/USDT:USDT"


@pytest.mark.parametrize("text", ["DOGEUSDT", "BTC/USDC", "hello world", ""])
async def test_resolve_symbol_rejects_what_is_not_a_listed_usdt_perpetual(
        venue: Harness, text: str) -> None:
    with pytest.raises(Rejected) as caught:
        venue.venue.resolve_symbol(text)
    assert caught.value.reason is RejectReason.BAD_SYMBOL
    assert repr(text) in str(caught.value)


async def test_usdc_margined_perpetuals_are_not_ours(binance: Harness) -> None:
    assert "BTC/USDC:USDC" in binance.http.markets  # loaded by ccxt...
    with pytest.raises(Rejected):
        binance.venue.market("BTC/USDC:USDC")  # ...but not guarded by this venue
    assert "BTC/USDC:USDC" not in binance.venue.symbols()


MIN_NOTIONAL = {"binance": Decimal("100"), "bybit": Decimal("5"), "bitget": Decimal("5")}


async def test_market_gives_tick_lot_and_minimum_as_decimals(venue: Harness) -> None:
    assert venue.venue.market("BTC/USDT:USDT") == MarketInfo(
        "BTC/USDT:USDT", tick=Decimal("0.1"), lot=Decimal("0.001"), min_qty=Decimal("0.001"),
        min_notional=MIN_NOTIONAL[venue.name])
    assert venue.venue.market("ETH/USDT:USDT").tick == Decimal("0.01")
    assert len(venue.venue.symbols()) == 52


async def test_unknown_market_is_bad_symbol(venue: Harness) -> None:
    with pytest.raises(Rejected) as caught:
        venue.venue.market("DOGE/USDT:USDT")
    assert caught.value.reason is RejectReason.BAD_SYMBOL


async def test_before_start_symbols_are_refused_with_a_hint() -> None:
    harness = await build("bybit", start=False)
    with pytest.raises(Rejected, match="start"):
        harness.venue.resolve_symbol("BTCUSDT")
    await harness.venue.close()


async def test_market_follows_a_reload_of_the_venues_markets(binance: Harness) -> None:
    """market() keeps what it read per loaded market (every reconcile asks twice per symbol),
    never past a reload: a venue that changed a tick is read afresh."""
    first = binance.venue.market("BTC/USDT:USDT")
    assert binance.venue.market("BTC/USDT:USDT") is first  # read once per loaded market
    info = p.binance_exchange_info()
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    price_filter = next(f for f in btc["filters"] if f["filterType"] == "PRICE_FILTER")
    price_filter["tickSize"] = "0.50"
    binance.http.route("GET", "/fapi/v1/exchangeInfo", info)
    await binance.http.load_markets(True)  # type: ignore[attr-defined]

    assert binance.venue.market("BTC/USDT:USDT") == MarketInfo(
        "BTC/USDT:USDT", tick=Decimal("0.5"), lot=first.lot, min_qty=first.min_qty,
        min_notional=first.min_notional)
