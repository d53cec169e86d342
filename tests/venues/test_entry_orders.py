"""The entry order each venue receives (ccxt with fetch intercepted): Bybit and Bitget carry the
stop-loss on the entry itself; Binance cannot, and says so before anything is sent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.reports import MarketOrderRequest, OrderKind
from engine.domain.values import OrderSide
from engine.errors import Rejected, RejectReason
from tests.venues import payloads as p
from tests.venues.conftest import Harness, Reply

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


# --- limit entries: type limit at our price, GTC; the attached stop rides on it likewise ------
def limit_entry(stop: str | None = "62720.1") -> MarketOrderRequest:
    return MarketOrderRequest(BTC, OrderSide.BUY, Decimal("0.007"), False, CID,
                              stop_loss=Decimal(stop) if stop else None,
                              limit_price=Decimal("64000.1"))


async def limit_entry_sent(harness: Harness, path: str, answer: object) -> dict[str, str]:
    """Send the limit entry; what the venue received. The order is GTC: our timeout ends it."""
    harness.http.route("POST", path, answer)
    order = await harness.venue.market_order(limit_entry())
    assert order.kind is OrderKind.LIMIT and order.price == Decimal("64000.1")
    sent: dict[str, str] = harness.http.last("POST", path).body
    assert sent.get("timeInForce", sent.get("force", "gtc")).lower() == "gtc"
    return sent


async def test_bybit_limit_entry_rests_with_its_stop_loss(bybit: Harness) -> None:
    sent = await limit_entry_sent(bybit, "/v5/order/create",
                                  p.bybit_ok({"orderId": "bb-10", "orderLinkId": CID}))
    assert (sent["orderType"], sent["price"], sent["qty"], sent["orderLinkId"]) == (
        "Limit", "64000.1", "0.007", CID)
    assert (sent["stopLoss"], sent["slTriggerBy"]) == ("62720.1", "MarkPrice")


async def test_bitget_limit_entry_rests_with_a_preset_stop_loss(bitget: Harness) -> None:
    sent = await limit_entry_sent(bitget, "/api/v2/mix/order/place-order",
                                  p.bitget_ok({"orderId": "m-10", "clientOid": CID}))
    assert (sent["orderType"], sent["price"], sent["size"], sent["clientOid"]) == (
        "limit", "64000.1", "0.007", CID)
    assert sent["presetStopLossPrice"] == "62720.1"


async def test_binance_limit_entry_and_its_partial_fill_found_by_client_id(
        binance: Harness) -> None:
    resting = {"orderId": 90, "clientOrderId": CID, "symbol": "BTCUSDT", "status": "NEW",
               "side": "BUY", "type": "LIMIT", "price": "64000.1", "origQty": "0.007",
               "executedQty": "0", "avgPrice": "0", "timeInForce": "GTC",
               "positionSide": "BOTH", "reduceOnly": False, "updateTime": p.NOW_MS}
    binance.http.route("POST", "/fapi/v1/order", resting)
    order = await binance.venue.market_order(limit_entry(None))
    sent = binance.http.last("POST", "/fapi/v1/order").params
    assert (sent["type"], sent["price"], sent["quantity"], sent["timeInForce"]) == (
        "LIMIT", "64000.1", "0.007", "GTC")
    assert order.is_resting and order.filled_qty == 0 and order.kind is OrderKind.LIMIT

    binance.http.route("GET", "/fapi/v1/algoOrder",
                       Reply(400, p.binance_error(-2013, "Order does not exist.")))
    binance.http.route("GET", "/fapi/v1/order", {
        **resting, "status": "PARTIALLY_FILLED", "executedQty": "0.003", "avgPrice": "64000.1"})
    found = await binance.venue.find_order(BTC, CID)
    assert binance.http.last("GET", "/fapi/v1/order").params["origClientOrderId"] == CID
    assert found is not None and found.is_resting and found.kind is OrderKind.LIMIT
    assert (found.filled_qty, found.price) == (Decimal("0.003"), Decimal("64000.1"))
