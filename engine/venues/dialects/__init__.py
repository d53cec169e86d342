"""One dialect per exchange; `DIALECTS` maps the names accepted in settings to them."""

from __future__ import annotations

from engine.venues.dialects.base import Dialect, Subscription
from engine.venues.dialects.binance import BinanceDialect
from engine.venues.dialects.bitget import BitgetDialect
from engine.venues.dialects.bybit import BybitDialect

DIALECTS: dict[str, type[Dialect]] = {
    "binance": BinanceDialect,
    "binanceusdm": BinanceDialect,
    "bybit": BybitDialect,
    "bitget": BitgetDialect,
}

__all__ = ["DIALECTS", "BinanceDialect", "BitgetDialect", "BybitDialect", "Dialect",
           "Subscription"]
