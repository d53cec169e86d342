"""Bybit v5 linear: conditional reduce-only stops, amended in place with triggerBy kept."""

from __future__ import annotations

from decimal import Decimal

from engine.domain.reports import OrderKind, OrderStatus, StopRequest
from engine.domain.values import PositionSide
from tests.venues import payloads as p
from tests.venues.conftest import Harness

BTC = "BTC/USDT:USDT"
CID = "vgs11223344556677889900a"


async def test_stop_is_a_conditional_reduce_only_mark_price_order(bybit: Harness) -> None:
    bybit.http.route("POST", "/v5/order/create", p.placed("bybit", "bb-1", CID))
    order = await bybit.venue.place_stop(
        StopRequest(BTC, PositionSide.LONG, Decimal("0.0105"), Decimal("60000.04"), CID))

    sent = bybit.http.last("POST", "/v5/order/create").body
    assert sent == {
        "symbol": "BTCUSDT", "category": "linear", "side": "Sell", "orderType": "Market",
        "qty": "0.01", "triggerPrice": "60000.1", "triggerDirection": 2,
        "triggerBy": "MarkPrice", "reduceOnly": True, "closeOnTrigger": True,
        "positionIdx": 0, "orderLinkId": CID}
    assert (order.order_id, order.trigger_price, order.qty) == (
        "bb-1", Decimal("60000.1"), Decimal("0.010"))


async def test_short_stop_triggers_on_a_rise(bybit: Harness) -> None:
    bybit.http.route("POST", "/v5/order/create", p.placed("bybit", "bb-2", CID))
    await bybit.venue.place_stop(
        StopRequest(BTC, PositionSide.SHORT, Decimal("1"), Decimal("70000.09"), CID))

    sent = bybit.http.last("POST", "/v5/order/create").body
    assert (sent["side"], sent["triggerDirection"], sent["triggerPrice"]) == ("Buy", 1, "70000")


async def test_one_call_lists_the_stops_of_every_symbol(bybit: Harness) -> None:
    bybit.account.stops = [
        p.bybit_stop_order("a", "vgsa"),
        p.bybit_stop_order("b", "vgsb", side="Buy", direction=2),  # a buy on a fall: TP of a short
        p.bybit_stop_order("c", "", stop_type="StopLoss", qty="0"),  # position SL from the app
        p.bybit_stop_order("d", "entry", side="Buy", direction=1, reduce_only=False),
    ]
    mark = bybit.mark()
    snapshot = await bybit.venue.snapshot()

    (listed,) = [r for r in bybit.since(mark) if r.path == "/v5/order/realtime"]
    assert listed.params == {"category": "linear", "settleCoin": "USDT",
                             "orderFilter": "StopOrder", "limit": "50"}
    by_id = {o.order_id: o for o in snapshot.orders}
    assert by_id["a"].kind is OrderKind.STOP_LOSS
    assert by_id["b"].kind is OrderKind.TAKE_PROFIT
    assert by_id["c"].kind is OrderKind.STOP_LOSS and by_id["c"].qty is None
    assert by_id["c"].client_id is None
    assert by_id["d"].kind is OrderKind.OTHER_TRIGGER


async def test_amend_keeps_mark_price_and_sends_the_rounded_strings(bybit: Harness) -> None:
    bybit.account.stops = [p.bybit_stop_order("bb-1", CID)]
    (order,) = (await bybit.venue.snapshot()).orders
    bybit.http.route("POST", "/v5/order/amend", p.placed("bybit", "bb-1", CID))

    amended = await bybit.venue.amend_stop(order, Decimal("60500.01"), Decimal("0.0209"))

    sent = bybit.http.last("POST", "/v5/order/amend").body
    assert sent == {"category": "linear", "symbol": "BTCUSDT", "orderId": "bb-1",
                    "qty": "0.02", "triggerPrice": "60500.1", "triggerBy": "MarkPrice"}
    assert (amended.order_id, amended.trigger_price, amended.qty) == (
        "bb-1", Decimal("60500.1"), Decimal("0.020"))
    assert bybit.venue.capabilities.amend_stop_in_place


async def test_amending_a_whole_position_stop_moves_only_its_trigger(bybit: Harness) -> None:
    bybit.account.stops = [p.bybit_stop_order("bb-2", CID, qty="0")]
    (order,) = (await bybit.venue.snapshot()).orders
    bybit.http.route("POST", "/v5/order/amend", p.placed("bybit", "bb-2", CID))

    # a size below the minimum is no reason to refuse: the stop's size is not ours to change
    amended = await bybit.venue.amend_stop(order, Decimal("60500.01"), Decimal("0.0004"))

    sent = bybit.http.last("POST", "/v5/order/amend").body
    assert sent == {"category": "linear", "symbol": "BTCUSDT", "orderId": "bb-2",
                    "triggerPrice": "60500.1", "triggerBy": "MarkPrice"}
    assert amended.whole_position and amended.qty is None


async def test_cancel_names_the_order_and_category(bybit: Harness) -> None:
    bybit.account.stops = [p.bybit_stop_order("bb-1", CID)]
    (order,) = (await bybit.venue.snapshot()).orders
    bybit.http.route("POST", "/v5/order/cancel", p.placed("bybit", "bb-1", CID))

    await bybit.venue.cancel_order(order)

    assert bybit.http.last("POST", "/v5/order/cancel").body == {
        "category": "linear", "symbol": "BTCUSDT", "orderId": "bb-1"}


async def test_a_filled_stop_is_found_in_the_history(bybit: Harness) -> None:
    bybit.http.route("GET", "/v5/order/history", p.bybit_ok({"category": "linear", "list": [
        p.bybit_stop_order("bb-1", CID, status="Filled")], "nextPageCursor": ""}))
    order = await bybit.venue.find_order(BTC, CID)

    realtime = bybit.http.sent("GET", "/v5/order/realtime")
    assert realtime[0].params["orderFilter"] == "StopOrder"  # resting stops first
    assert realtime[1].params["orderLinkId"] == CID  # then by client id (recent closed too)
    assert bybit.http.last("GET", "/v5/order/history").params["orderLinkId"] == CID
    assert order is not None and order.status is OrderStatus.FILLED


async def test_more_than_a_page_of_stops_follows_the_cursor(bybit: Harness) -> None:
    first = [p.bybit_stop_order(f"s{i}", f"vgs{i}") for i in range(50)]
    second = [p.bybit_stop_order("s50", "vgs50")]

    def realtime(request: object) -> object:
        cursor = getattr(request, "params", {}).get("cursor")
        if cursor is None:
            return p.bybit_ok({"category": "linear", "list": first, "nextPageCursor": "page2"})
        return p.bybit_ok({"category": "linear", "list": second, "nextPageCursor": ""})

    bybit.http.route("GET", "/v5/order/realtime", realtime)
    snapshot = await bybit.venue.snapshot()

    assert len(snapshot.orders) == 51 and snapshot.calls == 3
    assert bybit.http.last("GET", "/v5/order/realtime").params["cursor"] == "page2"
