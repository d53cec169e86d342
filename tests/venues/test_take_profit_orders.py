"""The exit plan's take-profit on each venue (ccxt with `fetch` intercepted): a sized,
reduce-only order triggered on the mark price in the position's favour, closing at market."""

from __future__ import annotations

from decimal import Decimal

from engine.domain.ids import OrderPurpose, client_order_id
from engine.domain.reports import OrderKind, StopRequest
from engine.domain.values import OrderSide, PositionSide
from tests.venues import payloads as p
from tests.venues.conftest import Harness

BTC = "BTC/USDT:USDT"
CID = client_order_id("paper", BTC, 1, OrderPurpose.TAKE_PROFIT, 1)


def take_profit(side: PositionSide, qty: str, price: str) -> StopRequest:
    return StopRequest(BTC, side, Decimal(qty), Decimal(price), CID, kind=OrderKind.TAKE_PROFIT)


async def test_binance_take_profit_is_a_reduce_only_mark_price_take_profit_market_algo_order(
        binance: Harness) -> None:
    binance.http.route("POST", "/fapi/v1/algoOrder", p.binance_algo_order(
        4101, CID, order_type="TAKE_PROFIT_MARKET", trigger="70000.10"))
    order = await binance.venue.place_stop(take_profit(PositionSide.LONG, "0.0105", "70000.04"))

    sent = binance.http.last("POST", "/fapi/v1/algoOrder").params
    assert {k: sent[k] for k in ("symbol", "side", "type", "algoType", "quantity",
                                 "triggerPrice", "reduceOnly", "workingType", "clientAlgoId")} == {
        "symbol": "BTCUSDT", "side": "SELL", "type": "TAKE_PROFIT_MARKET",
        "algoType": "CONDITIONAL", "quantity": "0.01", "triggerPrice": "70000.1",
        "reduceOnly": "true", "workingType": "MARK_PRICE", "clientAlgoId": CID}
    assert "closePosition" not in sent  # sized to the position, resized with it
    assert (order.order_id, order.kind, order.side, order.reduce_only, order.trigger_price) == (
        "4101", OrderKind.TAKE_PROFIT, OrderSide.SELL, True, Decimal("70000.1"))
    assert not order.is_stop_for(PositionSide.LONG)  # never counted as protection
    assert order.is_take_profit_for(PositionSide.LONG)


async def test_binance_short_take_profit_is_a_buy_rounded_down(binance: Harness) -> None:
    binance.http.route("POST", "/fapi/v1/algoOrder", p.binance_algo_order(
        4102, CID, side="BUY", order_type="TAKE_PROFIT_MARKET", trigger="60000.00"))
    await binance.venue.place_stop(take_profit(PositionSide.SHORT, "0.5", "60000.09"))

    sent = binance.http.last("POST", "/fapi/v1/algoOrder").params
    assert (sent["side"], sent["type"], sent["triggerPrice"], sent["quantity"]) == (
        "BUY", "TAKE_PROFIT_MARKET", "60000", "0.5")


async def test_bybit_take_profit_is_a_conditional_reduce_only_order_rising_through_the_mark(
        bybit: Harness) -> None:
    bybit.http.route("POST", "/v5/order/create", p.placed("bybit", "bb-tp", CID))
    order = await bybit.venue.place_stop(take_profit(PositionSide.LONG, "0.0105", "70000.04"))

    sent = bybit.http.last("POST", "/v5/order/create").body
    assert sent == {
        "symbol": "BTCUSDT", "category": "linear", "side": "Sell", "orderType": "Market",
        "qty": "0.01", "triggerPrice": "70000.1", "triggerDirection": 1,
        "triggerBy": "MarkPrice", "reduceOnly": True, "positionIdx": 0, "orderLinkId": CID}
    assert (order.order_id, order.kind, order.qty) == ("bb-tp", OrderKind.TAKE_PROFIT,
                                                       Decimal("0.010"))


async def test_bybit_short_take_profit_falls_through_the_mark(bybit: Harness) -> None:
    bybit.http.route("POST", "/v5/order/create", p.placed("bybit", "bb-tp2", CID))
    await bybit.venue.place_stop(take_profit(PositionSide.SHORT, "1", "60000.09"))

    sent = bybit.http.last("POST", "/v5/order/create").body
    assert (sent["side"], sent["triggerDirection"], sent["triggerPrice"]) == ("Buy", 2, "60000")


async def test_bitget_take_profit_is_a_sized_profit_plan_on_mark_price(bitget: Harness) -> None:
    place = "/api/v2/mix/order/place-tpsl-order"
    bitget.http.route("POST", place, p.placed("bitget", "bg-tp", CID))
    order = await bitget.venue.place_stop(take_profit(PositionSide.LONG, "0.0105", "70000.04"))

    sent = bitget.http.last("POST", place).body
    assert {k: sent[k] for k in ("symbol", "productType", "marginCoin", "planType",
                                 "triggerType", "triggerPrice", "size", "holdSide",
                                 "clientOid")} == {
        "symbol": "BTCUSDT", "productType": "USDT-FUTURES", "marginCoin": "USDT",
        "planType": "profit_plan", "triggerType": "mark_price", "triggerPrice": "70000.1",
        "size": "0.01", "holdSide": "buy", "clientOid": CID}
    assert "executePrice" not in sent  # market execution
    assert (order.order_id, order.kind, order.reduce_only) == ("bg-tp", OrderKind.TAKE_PROFIT,
                                                               True)
    # Its cancel names the planType of a sized take-profit.
    assert bitget.venue._dialect.cancel_params(order)["planType"] == "profit_plan"
