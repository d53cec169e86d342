"""What an entry sizes itself on, per venue (ccxt with fetch intercepted): the mark price of the
symbol and the account's USDT equity, as Decimals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.venues import payloads as p
from tests.venues.conftest import Harness

BTC = "BTC/USDT:USDT"

# (path of the mark, its reply, path of the balance, its reply) in each venue's words
QUOTES: dict[str, tuple[str, Any, str, Any]] = {
    "binance": (
        "/fapi/v1/premiumIndex",
        {"symbol": "BTCUSDT", "markPrice": "64990.10000000", "indexPrice": "64995.0",
         "estimatedSettlePrice": "64990.0", "lastFundingRate": "0.0001",
         "interestRate": "0.0001", "nextFundingTime": p.NOW_MS, "time": p.NOW_MS},
        "/fapi/v3/account",
        {"totalWalletBalance": "1000.5", "totalUnrealizedProfit": "-2.5",
         "totalMarginBalance": "998.0", "availableBalance": "900.0",
         "assets": [{"asset": "USDT", "walletBalance": "1000.5", "unrealizedProfit": "-2.5",
                     "marginBalance": "998.0", "availableBalance": "900.0",
                     "crossWalletBalance": "1000.5", "maxWithdrawAmount": "900.0",
                     "updateTime": p.NOW_MS}],
         "positions": []}),
    "bybit": (
        "/v5/market/tickers",
        p.bybit_ok({"category": "linear", "list": [{
            "symbol": "BTCUSDT", "lastPrice": "65001.5", "markPrice": "64990.1",
            "indexPrice": "64995", "bid1Price": "65001", "ask1Price": "65002"}]}),
        "/v5/account/wallet-balance",
        p.bybit_ok({"list": [{"accountType": "UNIFIED", "totalEquity": "998.0", "coin": [{
            "coin": "USDT", "equity": "998.0", "walletBalance": "1000.5",
            "unrealisedPnl": "-2.5", "locked": "0", "totalOrderIM": "0",
            "totalPositionIM": "50"}]}]})),
    "bitget": (
        "/api/v2/mix/market/symbol-price",
        p.bitget_ok([{"symbol": "BTCUSDT", "price": "65001.5", "indexPrice": "64995",
                      "markPrice": "64990.1", "ts": str(p.NOW_MS)}]),
        "/api/v2/mix/account/accounts",
        p.bitget_ok([{"marginCoin": "USDT", "locked": "0", "available": "900",
                      "crossedMaxAvailable": "900", "isolatedMaxAvailable": "900",
                      "maxTransferOut": "900", "accountEquity": "998.0", "usdtEquity": "998.0",
                      "btcEquity": "0.015", "crossedRiskRate": "0", "unrealizedPL": "-2.5",
                      "coupon": "0"}])),
}


async def test_mark_price_and_equity_are_decimals(venue: Harness) -> None:
    mark_path, mark, balance_path, balance = QUOTES[venue.name]
    venue.http.route("GET", mark_path, mark)
    venue.http.route("GET", balance_path, balance)

    price = await venue.venue.mark_price(BTC)
    equity = await venue.venue.equity()

    assert price == Decimal("64990.1") and isinstance(price, Decimal)
    assert equity == Decimal("998.0") and isinstance(equity, Decimal)  # wallet + unrealized
