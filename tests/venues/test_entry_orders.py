"""The entry order each venue receives (ccxt with fetch intercepted): Bybit and Bitget carry the
stop-loss on the entry itself; Binance cannot, and says so before anything is sent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.reports import MarketOrderRequest
from engine.domain.values import OrderSide
from engine.errors import Rejected, RejectReason
from tests.venues import payloads as p
from tests.venues.conftest import Harness

BTC = "BTC/USDT:USDT"
CID = "vge0123456789abcdef0123"


def entry(stop: str | None = "63700.1") -> MarketOrderRequest:
    return MarketOrderRequest(BTC, OrderSide.BUY, Decimal("0.007"), False, CID,
                              stop_loss=Decimal(stop) if stop else None)


async def test_bybit_entry_carries_a_mark_price_stop_loss(bybit: Harness) -> None:
    assert bybit.venue.capabilities.attached_stop
    bybit.http.route("POST", "/v5/order/create",
                     p.bybit_ok({"orderId": "bb-9", "orderLinkId": CID}))
    order = await bybit.venue.market_order(entry())

    sent = bybit.http.last("POST", "/v5/order/create").body
    assert (sent["orderType"], sent["side"], sent["qty"], sent["orderLinkId"]) == (
        "Market", "Buy", "0.007", CID)
    assert (sent["stopLoss"], sent["slTriggerBy"], sent["tpslMode"]) == (
        "63700.1", "MarkPrice", "Full")
    assert sent.get("reduceOnly") in (False, None)
    assert order.order_id == "bb-9" and order.client_id == CID


async def test_bitget_entry_carries_a_preset_stop_loss(bitget: Harness) -> None:
    assert bitget.venue.capabilities.attached_stop
    bitget.http.route("POST", "/api/v2/mix/order/place-order",
                      p.bitget_ok({"orderId": "m-9", "clientOid": CID}))
    await bitget.venue.market_order(entry())

    sent = bitget.http.last("POST", "/api/v2/mix/order/place-order").body
    assert (sent["orderType"], sent["side"], sent["size"], sent["clientOid"]) == (
        "market", "buy", "0.007", CID)
    assert sent["presetStopLossPrice"] == "63700.1"
    assert sent.get("reduceOnly", "NO") == "NO"


async def test_binance_entry_has_no_attached_stop(binance: Harness) -> None:
    assert not binance.venue.capabilities.attached_stop
    with pytest.raises(Rejected) as caught:
        await binance.venue.market_order(entry())
    assert caught.value.reason is RejectReason.INVALID_ORDER
    assert binance.http.sent("POST", "/fapi/v1/order") == []  # refused before sending

    binance.http.route("POST", "/fapi/v1/order", {
        "orderId": 89, "clientOrderId": CID, "symbol": "BTCUSDT", "status": "FILLED",
        "side": "BUY", "type": "MARKET", "origQty": "0.007", "executedQty": "0.007",
        "avgPrice": "65000", "positionSide": "BOTH", "reduceOnly": False,
        "updateTime": p.NOW_MS})
    order = await binance.venue.market_order(entry(None))
    sent = binance.http.last("POST", "/fapi/v1/order").params
    assert (sent["type"], sent["side"], sent["quantity"], sent["newClientOrderId"]) == (
        "MARKET", "BUY", "0.007", CID)
    assert sent.get("reduceOnly", "false") == "false" and "stopPrice" not in sent
    assert order.qty == Decimal("0.007")
