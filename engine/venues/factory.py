"""Build a CcxtVenue for one account from its settings."""

from __future__ import annotations

import random
from typing import Any

import ccxt.pro

from engine.clock import Clock
from engine.errors import OperatorError
from engine.venues.ccxt_venue import CcxtVenue
from engine.venues.dialects import DIALECTS
from engine.venues.streams import Backoff, Watcher


def make_venue(account_name: str, venue: str, *, api_key: str | None, secret: str | None,
               password: str | None, testnet: bool, exchange: Any | None = None,
               clock: Clock | None = None, watcher: Watcher | None = None,
               backoff: Backoff | None = None, rng: random.Random | None = None) -> CcxtVenue:
    """`venue` is "binance" (USD-M), "bybit" or "bitget". The ccxt.pro class is built so REST and
    websockets share one instance; `exchange` lets tests inject one whose `fetch` is intercepted,
    `watcher` replaces the websocket watch calls."""
    dialect_class = DIALECTS.get(venue.strip().lower())
    if dialect_class is None:
        raise OperatorError(f"account {account_name}: unknown venue {venue!r}; "
                            f"expected one of {', '.join(sorted(DIALECTS))}")
    dialect = dialect_class()
    if dialect.needs_password and not password:
        raise OperatorError(f"account {account_name}: {dialect.name} needs the API passphrase")
    if exchange is None:
        exchange_class = getattr(ccxt.pro, dialect.ccxt_id)
        exchange = exchange_class({"enableRateLimit": True})
    credentials = {"apiKey": api_key, "secret": secret, "password": password}
    for attribute, value in credentials.items():
        if value:
            setattr(exchange, attribute, value)
    dialect.configure(exchange, testnet=testnet)
    return CcxtVenue(exchange, dialect, account=account_name,
                     secrets=(api_key, secret, password), clock=clock, watcher=watcher,
                     backoff=backoff, rng=rng)
