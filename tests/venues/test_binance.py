"""Binance USD-M: stops are algo orders on /fapi/v1/algoOrder; no amend."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.reports import MarketOrderRequest, OrderKind, OrderStatus, StopRequest
from engine.domain.values import OrderSide, PositionSide
from engine.errors import Rejected
from tests.venues import payloads as p
from tests.venues.conftest import Harness, Reply

BTC = "BTC/USDT:USDT"
CID = "vgs0a1b2c3d4e5f6a7b8c9d0"


async def test_stop_is_a_reduce_only_mark_price_stop_market_algo_order(binance: Harness) -> None:
    binance.http.route("POST", "/fapi/v1/algoOrder", p.binance_algo_order(4001, CID))
    order = await binance.venue.place_stop(
        StopRequest(BTC, PositionSide.LONG, Decimal("0.0105"), Decimal("60000.04"), CID))

    sent = binance.http.last("POST", "/fapi/v1/algoOrder")
    assert sent.url.startswith("https://fapi.binance.com/fapi/v1/algoOrder")
    assert {k: sent.params[k] for k in (
        "symbol", "side", "type", "algoType", "quantity", "triggerPrice", "reduceOnly",
        "workingType", "clientAlgoId")} == {
        "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "algoType": "CONDITIONAL",
        "quantity": "0.01", "triggerPrice": "60000.1", "reduceOnly": "true",
        "workingType": "MARK_PRICE", "clientAlgoId": CID}
    assert "closePosition" not in sent.params  # sized to the position, resized with it
    assert (order.order_id, order.client_id, order.kind) == ("4001", CID, OrderKind.STOP_LOSS)


async def test_short_stop_is_a_buy_rounded_down(binance: Harness) -> None:
    binance.http.route("POST", "/fapi/v1/algoOrder",
                       p.binance_algo_order(4002, CID, side="BUY", trigger="70000.00"))
    await binance.venue.place_stop(
        StopRequest(BTC, PositionSide.SHORT, Decimal("0.5"), Decimal("70000.09"), CID))

    sent = binance.http.last("POST", "/fapi/v1/algoOrder").params
    assert (sent["side"], sent["triggerPrice"], sent["quantity"]) == ("BUY", "70000", "0.5")


async def test_resting_stops_are_listed_for_all_symbols_in_one_call(binance: Harness) -> None:
    binance.account.stops = [
        p.binance_algo_order(1, "vgs1"),
        p.binance_algo_order(2, "tp1", order_type="TAKE_PROFIT_MARKET", trigger="70000"),
        p.binance_algo_order(3, "entry", side="BUY", reduce_only=False, trigger="66000"),
        p.binance_algo_order(4, "vgs4", base="ETH", trigger="3000.00"),
    ]
    mark = binance.mark()
    snapshot = await binance.venue.snapshot()

    listed = [r for r in binance.since(mark) if r.path == "/fapi/v1/openAlgoOrders"]
    assert len(listed) == 1 and "symbol" not in listed[0].params
    kinds = {o.order_id: o.kind for o in snapshot.orders}
    assert kinds == {"1": OrderKind.STOP_LOSS, "2": OrderKind.TAKE_PROFIT,
                     "3": OrderKind.OTHER_TRIGGER, "4": OrderKind.STOP_LOSS}


async def test_cancel_goes_to_the_algo_endpoint_by_algo_id(binance: Harness) -> None:
    binance.account.stops = [p.binance_algo_order(4001, CID)]
    (order,) = (await binance.venue.snapshot()).orders
    binance.http.route("DELETE", "/fapi/v1/algoOrder",
                       {"algoId": 4001, "clientAlgoId": CID, "code": "200", "msg": "success"})

    await binance.venue.cancel_order(order)

    sent = binance.http.last("DELETE", "/fapi/v1/algoOrder")
    assert (sent.params["algoId"], sent.params["symbol"]) == ("4001", "BTCUSDT")
    assert binance.http.sent("DELETE", "/fapi/v1/order") == []


async def test_capabilities_say_replace_and_amend_sends_nothing(binance: Harness) -> None:
    assert binance.venue.capabilities.amend_stop_in_place is False
    binance.account.stops = [p.binance_algo_order(4001, CID)]
    (order,) = (await binance.venue.snapshot()).orders
    mark = binance.mark()

    with pytest.raises(Rejected):
        await binance.venue.amend_stop(order, Decimal("61000"), Decimal("0.01"))
    assert binance.since(mark) == []


async def test_a_triggered_stop_is_found_by_client_algo_id(binance: Harness) -> None:
    binance.http.route("GET", "/fapi/v1/algoOrder",
                       p.binance_algo_order(4001, CID, status="TRIGGERED"))
    order = await binance.venue.find_order(BTC, CID)

    listed = binance.http.last("GET", "/fapi/v1/openAlgoOrders")
    assert listed.params["symbol"] == "BTCUSDT"
    assert binance.http.last("GET", "/fapi/v1/algoOrder").params["clientAlgoId"] == CID
    assert order is not None and order.status is OrderStatus.TRIGGERED


async def test_an_unknown_client_id_is_none(binance: Harness) -> None:
    missing = Reply(400, p.binance_error(-2013, "Order does not exist."))
    binance.http.route("GET", "/fapi/v1/algoOrder", missing)
    binance.http.route("GET", "/fapi/v1/order", missing)

    assert await binance.venue.find_order(BTC, CID) is None
    assert binance.http.last("GET", "/fapi/v1/order").params["origClientOrderId"] == CID


async def test_market_close_is_reduce_only_with_our_client_id(binance: Harness) -> None:
    binance.http.route("POST", "/fapi/v1/order", {
        "orderId": 88, "clientOrderId": "vgc1", "symbol": "BTCUSDT", "status": "FILLED",
        "side": "SELL", "type": "MARKET", "origQty": "0.010", "executedQty": "0.010",
        "avgPrice": "64500", "positionSide": "BOTH", "reduceOnly": True, "updateTime": p.NOW_MS})
    order = await binance.venue.market_order(
        MarketOrderRequest(BTC, OrderSide.SELL, Decimal("0.0109"), True, "vgc1"))

    sent = binance.http.last("POST", "/fapi/v1/order").params
    assert (sent["type"], sent["quantity"], sent["reduceOnly"], sent["newClientOrderId"]) == (
        "MARKET", "0.01", "true", "vgc1")
    assert order.status is OrderStatus.FILLED and order.kind is OrderKind.MARKET


async def test_snapshot_keeps_to_usdt_margined_positions(binance: Harness) -> None:
    usdc = {**p.binance_position("BTC", "0.002"), "symbol": "BTCUSDC", "marginAsset": "USDC"}
    binance.account.positions = [p.binance_position("BTC", "-0.004"), usdc]

    (position,) = (await binance.venue.snapshot()).positions

    assert (position.symbol, position.side, position.qty) == (
        BTC, PositionSide.SHORT, Decimal("0.004"))
