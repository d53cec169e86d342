"""Bitget USDT-M: sized loss_plan stops; every cancel names the planType."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.reports import MarketOrderRequest, OrderKind, OrderUpdate, StopRequest
from engine.domain.values import OrderSide, PositionSide
from tests.venues import payloads as p
from tests.venues.conftest import Harness, build

BTC = "BTC/USDT:USDT"
CID = "vgsfedcba9876543210fedcb"
PLACE = "/api/v2/mix/order/place-tpsl-order"
CANCEL = "/api/v2/mix/order/cancel-plan-order"


async def test_stop_is_a_sized_loss_plan_on_mark_price(bitget: Harness) -> None:
    bitget.http.route("POST", PLACE, p.placed("bitget", "bg-1", CID))
    order = await bitget.venue.place_stop(
        StopRequest(BTC, PositionSide.LONG, Decimal("0.0105"), Decimal("60000.04"), CID))

    sent = bitget.http.last("POST", PLACE).body
    assert {k: sent[k] for k in ("symbol", "productType", "marginCoin", "planType",
                                 "triggerType", "triggerPrice", "size", "holdSide",
                                 "clientOid")} == {
        "symbol": "BTCUSDT", "productType": "USDT-FUTURES", "marginCoin": "USDT",
        "planType": "loss_plan", "triggerType": "mark_price", "triggerPrice": "60000.1",
        "size": "0.01", "holdSide": "buy", "clientOid": CID}
    assert "executePrice" not in sent  # market execution
    assert (order.order_id, order.kind, order.reduce_only) == ("bg-1", OrderKind.STOP_LOSS, True)


async def test_one_call_lists_every_tpsl_order(bitget: Harness) -> None:
    bitget.account.stops = [
        p.bitget_plan_order("1", "vgs1"),
        p.bitget_plan_order("2", "", plan_type="pos_loss", size=""),
        p.bitget_plan_order("3", "", plan_type="profit_plan", trigger="70000"),
    ]
    mark = bitget.mark()
    snapshot = await bitget.venue.snapshot()

    (listed,) = [r for r in bitget.since(mark) if r.path.endswith("orders-plan-pending")]
    assert listed.params == {"planType": "profit_loss", "productType": "USDT-FUTURES",
                             "limit": "100"}
    by_id = {o.order_id: o for o in snapshot.orders}
    assert by_id["1"].kind is OrderKind.STOP_LOSS and by_id["1"].qty == Decimal("0.01")
    assert by_id["2"].kind is OrderKind.STOP_LOSS and by_id["2"].qty is None  # whole position
    assert by_id["3"].kind is OrderKind.TAKE_PROFIT


@pytest.mark.parametrize(("plan_type", "size"), [("loss_plan", "0.01"), ("pos_loss", "")])
async def test_cancel_always_names_the_orders_plan_type(bitget: Harness, plan_type: str,
                                                        size: str) -> None:
    bitget.account.stops = [p.bitget_plan_order("bg-1", CID, plan_type=plan_type, size=size)]
    (order,) = (await bitget.venue.snapshot()).orders
    bitget.http.route("POST", CANCEL, p.bitget_ok(
        {"successList": [{"orderId": "bg-1", "clientOid": CID}], "failureList": []}))

    await bitget.venue.cancel_order(order)

    sent = bitget.http.last("POST", CANCEL).body
    assert sent == {"symbol": "BTCUSDT", "productType": "USDT-FUTURES", "planType": plan_type,
                    "orderIdList": [{"orderId": "bg-1"}]}


async def test_plan_type_is_derived_when_the_order_was_never_listed() -> None:
    harness = await build("bitget")
    harness.http.route("POST", PLACE, p.placed("bitget", "bg-9", CID))
    order = await harness.venue.place_stop(
        StopRequest(BTC, PositionSide.SHORT, Decimal("0.01"), Decimal("70000"), CID))
    harness.http.route("POST", CANCEL, p.bitget_ok(
        {"successList": [{"orderId": "bg-9", "clientOid": CID}], "failureList": []}))

    await harness.venue.cancel_order(order)
    await harness.venue.close()

    assert harness.http.last("POST", CANCEL).body["planType"] == "loss_plan"


async def test_amend_is_modify_tpsl_order_on_mark_price(bitget: Harness) -> None:
    bitget.account.stops = [p.bitget_plan_order("bg-1", CID)]
    (order,) = (await bitget.venue.snapshot()).orders
    bitget.http.route("POST", "/api/v2/mix/order/modify-tpsl-order",
                      p.bitget_ok({"orderId": "bg-1", "clientOid": CID}))

    amended = await bitget.venue.amend_stop(order, Decimal("60500.01"), Decimal("0.0209"))

    sent = bitget.http.last("POST", "/api/v2/mix/order/modify-tpsl-order").body
    assert sent == {"orderId": "bg-1", "symbol": "BTCUSDT", "productType": "USDT-FUTURES",
                    "marginCoin": "USDT", "triggerPrice": "60500.1",
                    "triggerType": "mark_price", "size": "0.02"}
    assert (amended.trigger_price, amended.qty) == (Decimal("60500.1"), Decimal("0.020"))


async def test_a_triggered_stop_is_found_in_the_plan_history(bitget: Harness) -> None:
    bitget.http.route("GET", "/api/v2/mix/order/orders-plan-history", p.bitget_ok(
        {"entrustedList": [p.bitget_plan_order("bg-1", CID, status="executed")],
         "endId": "bg-1"}))
    order = await bitget.venue.find_order(BTC, CID)

    history = bitget.http.last("GET", "/api/v2/mix/order/orders-plan-history").params
    assert (history["planType"], history["clientOid"]) == ("profit_loss", CID)
    assert order is not None and order.order_id == "bg-1" and not order.is_resting


async def test_market_close_uses_the_positions_margin_mode(bitget: Harness) -> None:
    bitget.account.positions = [p.bitget_position("BTC", "long", "0.01", margin_mode="isolated")]
    await bitget.venue.snapshot()
    bitget.http.route("POST", "/api/v2/mix/order/place-order",
                      p.bitget_ok({"orderId": "m-1", "clientOid": "vgc1"}))

    await bitget.venue.market_order(
        MarketOrderRequest(BTC, OrderSide.SELL, Decimal("0.01"), True, "vgc1"))

    sent = bitget.http.last("POST", "/api/v2/mix/order/place-order").body
    assert (sent["marginMode"], sent["reduceOnly"], sent["side"], sent["clientOid"]) == (
        "isolated", "YES", "sell", "vgc1")


async def test_demo_trading_sends_the_paptrading_header() -> None:
    harness = await build("bitget", testnet=True)
    await harness.venue.snapshot()
    await harness.venue.close()

    private = harness.http.last("GET", "/api/v2/mix/position/all-position")
    assert private.headers.get("PAPTRADING") == "1"
    assert private.url.startswith("https://api.bitget.com/")


async def test_more_than_a_page_of_tpsl_orders_is_paged_by_id(bitget: Harness) -> None:
    first = [p.bitget_plan_order(str(2000 - i), f"vgs{i}") for i in range(100)]
    second = [p.bitget_plan_order("1800", "vgs100")]
    bitget.http.route("GET", "/api/v2/mix/order/orders-plan-pending", lambda r: p.bitget_ok(
        {"entrustedList": second if "idLessThan" in r.params else first, "endId": None}))

    snapshot = await bitget.venue.snapshot()

    assert len(snapshot.orders) == 101 and snapshot.calls == 3
    last = bitget.http.last("GET", "/api/v2/mix/order/orders-plan-pending")
    assert last.params["idLessThan"] == "1901"


async def test_websocket_plan_types_are_understood(bitget: Harness) -> None:
    ws_order = {"instId": "BTCUSDT", "orderId": "bg-5", "clientOid": "vgs5", "size": "0.010",
                "side": "sell", "posSide": "net", "posMode": "one_way_mode", "planType": "sl",
                "triggerPrice": "60000.1", "price": "60000.1", "triggerType": "mark_price",
                "orderType": "market", "status": "live", "tradeSide": "close",
                "cTime": str(p.NOW_MS), "uTime": str(p.NOW_MS)}
    events = bitget.venue.events()
    bitget.watcher.push("trigger-orders", [bitget.http.parse_ws_order(ws_order)])
    event = await anext(events)

    assert isinstance(event, OrderUpdate)
    assert (event.order.kind, event.order.qty, event.order.side) == (
        OrderKind.STOP_LOSS, Decimal("0.01"), OrderSide.SELL)
    assert bitget.venue.dialect.plan_type(event.order) == "loss_plan"  # type: ignore[attr-defined]


async def test_amending_a_whole_position_stop_sends_an_empty_size(bitget: Harness) -> None:
    bitget.account.stops = [p.bitget_plan_order("bg-2", "", plan_type="pos_loss", size="")]
    (order,) = (await bitget.venue.snapshot()).orders
    bitget.http.route("POST", "/api/v2/mix/order/modify-tpsl-order",
                      p.bitget_ok({"orderId": "bg-2", "clientOid": ""}))

    amended = await bitget.venue.amend_stop(order, Decimal("61000"), Decimal("0.01"))

    # modify-tpsl-order requires the key; for a pos_loss it must be empty
    assert bitget.http.last("POST", "/api/v2/mix/order/modify-tpsl-order").body["size"] == ""
    assert amended.qty is None and amended.trigger_price == Decimal("61000")
    assert order.whole_position and amended.whole_position


# --- which position a listed stop protects: never read from its `side` alone -------------------
@pytest.mark.parametrize("listed_side", ["buy", "sell"])
@pytest.mark.parametrize(("held", "trigger", "closing"), [
    ("long", "60000.1", OrderSide.SELL),  # a long's stop rests below the mark (64500)
    ("short", "70000", OrderSide.BUY),  # a short's above it
])
async def test_a_stops_side_comes_from_its_trigger_against_the_mark(
        bitget: Harness, listed_side: str, held: str, trigger: str, closing: OrderSide) -> None:
    bitget.account.positions = [p.bitget_position("BTC", held, "0.01")]
    bitget.account.stops = [p.bitget_plan_order("bg-1", "", side=listed_side, trigger=trigger)]
    snapshot = await bitget.venue.snapshot()

    (position,), (order,) = snapshot.positions, snapshot.orders
    assert order.side is closing and order.is_stop_for(position.side)


@pytest.mark.parametrize("listed_side", ["buy", "sell"])
@pytest.mark.parametrize(("held", "closing"), [(PositionSide.LONG, OrderSide.SELL),
                                               (PositionSide.SHORT, OrderSide.BUY)])
async def test_our_own_stop_protects_the_side_we_placed_it_for(
        bitget: Harness, listed_side: str, held: PositionSide, closing: OrderSide) -> None:
    bitget.http.route("POST", PLACE, p.placed("bitget", "bg-1", CID))
    await bitget.venue.place_stop(StopRequest(BTC, held, Decimal("0.01"), Decimal("65000"), CID))
    # listed with no position to compare against (it closed meanwhile, or the mark is missing)
    bitget.account.stops = [p.bitget_plan_order("bg-1", CID, side=listed_side, trigger="65000")]

    (order,) = (await bitget.venue.snapshot()).orders

    assert order.side is closing


@pytest.mark.parametrize("listed_side", ["buy", "sell"])
@pytest.mark.parametrize(("hold_side", "closing"), [("long", OrderSide.SELL),
                                                    ("short", OrderSide.BUY)])
async def test_a_named_hold_side_wins_over_the_listed_side(
        bitget: Harness, listed_side: str, hold_side: str, closing: OrderSide) -> None:
    bitget.account.stops = [{**p.bitget_plan_order("bg-1", "", side=listed_side),
                             "posSide": hold_side}]
    (order,) = (await bitget.venue.snapshot()).orders
    assert order.side is closing


async def test_a_take_profit_reads_the_mark_the_other_way_round(bitget: Harness) -> None:
    bitget.account.positions = [p.bitget_position("BTC", "long", "0.01")]
    bitget.account.stops = [p.bitget_plan_order("bg-3", "", plan_type="profit_plan",
                                                side="buy", trigger="70000")]
    (order,) = (await bitget.venue.snapshot()).orders
    assert order.kind is OrderKind.TAKE_PROFIT and order.side is OrderSide.SELL


async def test_below_the_minimum_a_pos_loss_is_placed_without_a_size(bitget: Harness) -> None:
    bitget.http.route("POST", PLACE, p.placed("bitget", "bg-4", CID))
    order = await bitget.venue.place_stop(
        StopRequest(BTC, PositionSide.SHORT, Decimal("0.0004"), Decimal("70000.06"), CID))

    sent = bitget.http.last("POST", PLACE).body
    assert sent == {"symbol": "BTCUSDT", "productType": "USDT-FUTURES", "marginCoin": "USDT",
                    "planType": "pos_loss", "triggerPrice": "70000", "triggerType": "mark_price",
                    "holdSide": "sell", "clientOid": CID}
    assert order.whole_position and order.side is OrderSide.BUY
    assert bitget.venue.dialect.plan_type(order) == "pos_loss"  # type: ignore[attr-defined]
