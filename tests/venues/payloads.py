"""Venue-shaped JSON, as the exchanges answer it (trimmed to the fields that matter).

Markets are served raw so ccxt's own load_markets parses them; positions and orders are built per
test. BTC has tick 0.1 and lot 0.001 everywhere; extra symbols COIN00..COIN49 exist so a snapshot
can carry 50 positions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

Json = dict[str, Any]
NOW_MS = 1_767_614_400_000  # 2026-01-05 12:00 UTC
EXTRA_BASES = tuple(f"COIN{i:02d}" for i in range(50))
BASES = ("BTC", "ETH", *EXTRA_BASES)


# --- Binance USD-M ------------------------------------------------------------------------------
def binance_exchange_info() -> Json:
    def symbol(base: str) -> Json:
        tick = "0.10" if base == "BTC" else "0.01"
        return {
            "symbol": f"{base}USDT", "pair": f"{base}USDT", "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
            "baseAsset": base, "quoteAsset": "USDT", "marginAsset": "USDT",
            "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
            "quotePrecision": 8, "underlyingType": "COIN",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764",
                 "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000",
                 "stepSize": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120",
                 "stepSize": "0.001"},
                {"filterType": "MIN_NOTIONAL", "notional": "100"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    usdc_perp = {**symbol("BTC"), "symbol": "BTCUSDC", "pair": "BTCUSDC", "quoteAsset": "USDC",
                 "marginAsset": "USDC"}
    return {"timezone": "UTC", "serverTime": NOW_MS, "assets": [],
            "symbols": [symbol(b) for b in BASES] + [usdc_perp]}


def binance_position(base: str, amount: str, entry: str = "65000.0",
                     mark: str = "64500.00000000", side: str = "BOTH") -> Json:
    notional = Decimal(amount) * Decimal(mark)
    return {
        "symbol": f"{base}USDT", "positionSide": side, "positionAmt": amount,
        "entryPrice": entry, "breakEvenPrice": entry, "markPrice": mark,
        "unRealizedProfit": "-5.00000000", "liquidationPrice": "0", "isolatedMargin": "0",
        "notional": str(notional), "marginAsset": "USDT", "isolatedWallet": "0",
        "initialMargin": "64.5", "maintMargin": "2.58", "positionInitialMargin": "64.5",
        "openOrderInitialMargin": "0", "adl": 1, "bidNotional": "0", "askNotional": "0",
        "updateTime": NOW_MS,
    }


def binance_algo_order(algo_id: int, client_id: str, *, base: str = "BTC", side: str = "SELL",
                       qty: str = "0.010", trigger: str = "60000.10",
                       order_type: str = "STOP_MARKET", status: str = "NEW",
                       reduce_only: bool = True) -> Json:
    return {
        "algoId": algo_id, "clientAlgoId": client_id, "algoType": "CONDITIONAL",
        "orderType": order_type, "symbol": f"{base}USDT", "side": side, "positionSide": "BOTH",
        "timeInForce": "GTC", "quantity": qty, "algoStatus": status, "triggerPrice": trigger,
        "price": "0.00", "icebergQuantity": None, "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": "MARK_PRICE", "priceMatch": "NONE", "closePosition": False,
        "priceProtect": False, "reduceOnly": reduce_only, "createTime": NOW_MS,
        "updateTime": NOW_MS, "triggerTime": 0, "goodTillDate": 0,
    }


def binance_error(code: int, msg: str) -> Json:
    return {"code": code, "msg": msg}


# --- Bybit v5 linear ----------------------------------------------------------------------------
def bybit_instruments() -> Json:
    def instrument(base: str) -> Json:
        tick = "0.10" if base == "BTC" else "0.01"
        return {
            "symbol": f"{base}USDT", "contractType": "LinearPerpetual", "status": "Trading",
            "baseCoin": base, "quoteCoin": "USDT", "settleCoin": "USDT",
            "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
            "priceScale": "2",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00",
                               "leverageStep": "0.01"},
            "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": tick},
            "lotSizeFilter": {"maxOrderQty": "100.000", "minOrderQty": "0.001",
                              "qtyStep": "0.001", "postOnlyMaxOrderQty": "1000.000",
                              "maxMktOrderQty": "100.000", "minNotionalValue": "5"},
            "unifiedMarginTrade": True, "fundingInterval": 480, "copyTrading": "both",
            "isPreListing": False, "preListingInfo": None,
        }

    return bybit_ok({"category": "linear", "list": [instrument(b) for b in BASES],
                     "nextPageCursor": ""})


def bybit_ok(result: Any) -> Json:
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": NOW_MS}


def bybit_error(code: int, msg: str) -> Json:
    return {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": NOW_MS}


def bybit_position(base: str, side: str, size: str, position_idx: int = 0) -> Json:
    return {
        "positionIdx": position_idx, "riskId": 1, "riskLimitValue": "2000000",
        "symbol": f"{base}USDT", "side": side, "size": size, "avgPrice": "65000",
        "positionValue": "650", "tradeMode": 0, "positionStatus": "Normal", "autoAddMargin": 0,
        "adlRankIndicator": 2, "leverage": "10", "positionBalance": "65", "markPrice": "64500",
        "liqPrice": "", "bustPrice": "", "positionMM": "3.2", "positionIM": "65",
        "tpslMode": "Full", "takeProfit": "", "stopLoss": "", "trailingStop": "0",
        "unrealisedPnl": "-5", "curRealisedPnl": "0", "cumRealisedPnl": "0", "seq": 1,
        "isReduceOnly": False, "createdTime": str(NOW_MS - 60_000), "updatedTime": str(NOW_MS),
    }


def bybit_stop_order(order_id: str, link_id: str, *, base: str = "BTC", side: str = "Sell",
                     qty: str = "0.01", trigger: str = "60000.1", direction: int = 2,
                     status: str = "Untriggered", stop_type: str = "Stop",
                     reduce_only: bool = True) -> Json:
    return {
        "orderId": order_id, "orderLinkId": link_id, "blockTradeId": "",
        "symbol": f"{base}USDT", "price": "0", "qty": qty, "side": side, "isLeverage": "",
        "positionIdx": 0, "orderStatus": status, "cancelType": "UNKNOWN",
        "rejectReason": "EC_NoError", "avgPrice": "0", "leavesQty": qty, "leavesValue": "0",
        "cumExecQty": "0", "cumExecValue": "0", "cumExecFee": "0", "timeInForce": "IOC",
        "orderType": "Market", "stopOrderType": stop_type, "orderIv": "",
        "triggerPrice": trigger, "takeProfit": "", "stopLoss": "", "tpTriggerBy": "",
        "slTriggerBy": "", "triggerDirection": direction, "triggerBy": "MarkPrice",
        "lastPriceOnCreated": "65000", "reduceOnly": reduce_only, "closeOnTrigger": reduce_only,
        "smpType": "None", "smpGroup": 0, "smpOrderId": "", "tpslMode": "", "tpLimitPrice": "",
        "slLimitPrice": "", "placeType": "", "createdTime": str(NOW_MS),
        "updatedTime": str(NOW_MS),
    }


# --- Bitget USDT-M v2 -----------------------------------------------------------------------------
def bitget_contracts() -> Json:
    def contract(base: str) -> Json:
        return {
            "symbol": f"{base}USDT", "baseCoin": base, "quoteCoin": "USDT",
            "buyLimitPriceRatio": "0.01", "sellLimitPriceRatio": "0.01",
            "feeRateUpRatio": "0.005", "makerFeeRate": "0.0002", "takerFeeRate": "0.0006",
            "openCostUpRatio": "0.01", "supportMarginCoins": ["USDT"], "minTradeNum": "0.001",
            "priceEndStep": "1", "volumePlace": "3",
            "pricePlace": "1" if base == "BTC" else "2", "sizeMultiplier": "0.001",
            "symbolType": "perpetual", "minTradeUSDT": "5", "maxSymbolOrderNum": "200",
            "maxProductOrderNum": "400", "maxPositionNum": "150", "symbolStatus": "normal",
            "offTime": "-1", "limitOpenTime": "-1", "deliveryTime": "", "deliveryStartTime": "",
            "deliveryPeriod": "", "launchTime": "", "fundInterval": "8", "minLever": "1",
            "maxLever": "125", "posLimit": "0.05", "maintainTime": "",
        }

    return bitget_ok([contract(b) for b in BASES])


def bitget_ok(data: Any) -> Json:
    return {"code": "00000", "msg": "success", "requestTime": NOW_MS, "data": data}


def bitget_error(code: str, msg: str) -> Json:
    return {"code": code, "msg": msg, "requestTime": NOW_MS, "data": None}


def bitget_position(base: str, hold_side: str, total: str, pos_mode: str = "one_way_mode",
                    margin_mode: str = "crossed") -> Json:
    return {
        "marginCoin": "USDT", "symbol": f"{base}USDT", "holdSide": hold_side,
        "openDelegateSize": "0", "marginSize": "65", "available": total, "locked": "0",
        "total": total, "leverage": "10", "achievedProfits": "0", "openPriceAvg": "65000",
        "marginMode": margin_mode, "posMode": pos_mode, "unrealizedPL": "-5",
        "liquidationPrice": "0", "keepMarginRate": "0.004", "markPrice": "64500",
        "marginRatio": "0.01", "breakEvenPrice": "65010", "totalFee": "", "deductedFee": "0",
        "cTime": str(NOW_MS - 60_000), "uTime": str(NOW_MS),
    }


def bitget_plan_order(order_id: str, client_oid: str, *, base: str = "BTC",
                      plan_type: str = "loss_plan", side: str = "sell", size: str = "0.01",
                      trigger: str = "60000.1", status: str = "live") -> Json:
    return {
        "planType": plan_type, "symbol": f"{base}USDT", "size": size, "orderId": order_id,
        "clientOid": client_oid, "price": "0", "executePrice": "0", "callbackRatio": "",
        "triggerPrice": trigger, "triggerType": "mark_price", "planStatus": status,
        "side": side, "posSide": "net", "marginCoin": "USDT", "marginMode": "crossed",
        "enterPointSource": "API", "tradeSide": "close", "posMode": "one_way_mode",
        "orderType": "market", "stopSurplusTriggerPrice": "", "stopSurplusExecutePrice": "",
        "stopSurplusTriggerType": "", "stopLossTriggerPrice": "", "stopLossExecutePrice": "",
        "stopLossTriggerType": "", "cTime": str(NOW_MS), "uTime": str(NOW_MS),
    }


# --- the same facts in each venue's words (for tests that run on every venue) --------------------
PLACE_STOP = {
    "binance": ("POST", "/fapi/v1/algoOrder"),
    "bybit": ("POST", "/v5/order/create"),
    "bitget": ("POST", "/api/v2/mix/order/place-tpsl-order"),
}
POSITIONS = {
    "binance": ("GET", "/fapi/v3/positionRisk"),
    "bybit": ("GET", "/v5/position/list"),
    "bitget": ("GET", "/api/v2/mix/position/all-position"),
}


def placed(venue: str, order_id: str, client_id: str) -> Any:
    """The venue's answer to a successful stop placement."""
    if venue == "binance":
        return binance_algo_order(int(order_id), client_id)
    if venue == "bybit":
        return bybit_ok({"orderId": order_id, "orderLinkId": client_id})
    return bitget_ok({"orderId": order_id, "clientOid": client_id})


def resting_stop(venue: str, order_id: str, client_id: str, base: str = "BTC") -> Json:
    """A resting sell stop (protecting a long) as the venue lists it."""
    if venue == "binance":
        return binance_algo_order(int(order_id), client_id, base=base)
    if venue == "bybit":
        return bybit_stop_order(order_id, client_id, base=base)
    return bitget_plan_order(order_id, client_id, base=base)


def whole_position_stop(venue: str, order_id: str, client_id: str, *,
                        trigger: str = "60000.1") -> Json:
    """A resting whole-position sell stop (protecting a long) as the venue lists it."""
    if venue == "binance":
        return {**binance_algo_order(int(order_id), client_id, qty="0.000", trigger=trigger,
                                     reduce_only=False), "closePosition": True}
    if venue == "bybit":
        return bybit_stop_order(order_id, client_id, qty="0", trigger=trigger)
    return bitget_plan_order(order_id, client_id, plan_type="pos_loss", size="", trigger=trigger)


def long_position(venue: str, base: str, qty: str = "0.010") -> Json:
    if venue == "binance":
        return binance_position(base, qty)
    if venue == "bybit":
        return bybit_position(base, "Buy", qty)
    return bitget_position(base, "long", qty)


def would_trigger(venue: str, code: str) -> tuple[int, Json]:
    """HTTP status and body of a "stop would trigger immediately" rejection."""
    if venue == "binance":
        return 400, binance_error(int(code), "Order would immediately trigger.")
    if venue == "bybit":
        return 200, bybit_error(int(code), "expect Falling, but trigger_price[70000] >= "
                                           "current[64500]??MarkPrice")
    return 400, bitget_error(code, "Stop price for long positions please < mark price 64500")


def auth_failure(venue: str) -> tuple[int, Json]:
    if venue == "binance":
        return 401, binance_error(-2015, "Invalid API-key, IP, or permissions for action.")
    if venue == "bybit":
        return 401, bybit_error(10003, "API key is invalid.")
    return 400, bitget_error("40006", "Invalid ACCESS_KEY")
