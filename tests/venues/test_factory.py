"""make_venue: the right ccxt.pro class, credentials, testnet switches, refusals."""

from __future__ import annotations

import ccxt.pro
import pytest

from engine.errors import OperatorError
from engine.venues import CcxtVenue, make_venue
from tests.venues.conftest import build


@pytest.mark.parametrize(("venue", "cls"), [
    ("binance", ccxt.pro.binanceusdm), ("BYBIT", ccxt.pro.bybit), ("bitget", ccxt.pro.bitget)])
async def test_builds_the_pro_class_so_rest_and_streams_share_it(venue: str, cls: type) -> None:
    built = make_venue("main", venue, api_key="k" * 8, secret="s" * 8, password="p" * 8,
                       testnet=False)
    try:
        assert isinstance(built, CcxtVenue) and type(built.exchange) is cls
        assert built.exchange.apiKey == "k" * 8 and built.exchange.enableRateLimit is True
        assert built.account == "main"
    finally:
        built.exchange.timeout_on_exit = 0  # no network was opened: nothing to drain
        await built.close()


async def test_unknown_venue_is_an_operator_error() -> None:
    with pytest.raises(OperatorError, match="unknown venue 'kraken'"):
        make_venue("main", "kraken", api_key=None, secret=None, password=None, testnet=False)


async def test_bitget_needs_its_passphrase() -> None:
    with pytest.raises(OperatorError, match="passphrase"):
        make_venue("main", "bitget", api_key="k", secret="s", password=None, testnet=False)


@pytest.mark.parametrize(("venue", "host"), [
    ("binance", "https://demo-fapi.binance.com/fapi/"),
    ("bybit", "https://api-testnet.bybit.com/"),
])
async def test_testnet_uses_the_demo_or_sandbox_hosts(venue: str, host: str) -> None:
    harness = await build(venue, testnet=True)
    await harness.venue.snapshot()
    await harness.venue.close()

    assert harness.http.requests and all(r.url.startswith(host) for r in harness.http.requests)


async def test_missing_keys_fail_as_operator_error_at_start() -> None:
    harness = await build("bybit", start=False)
    harness.http.apiKey = ""
    with pytest.raises(OperatorError):
        await harness.venue.start()
    await harness.venue.close()
