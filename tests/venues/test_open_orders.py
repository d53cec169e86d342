"""fetch_open_orders: every resting NON-trigger order (limit entries, plain reduce-only limit
take-profits) of every symbol, in one call per venue; stops stay with snapshot()."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from engine.clock import ManualClock
from engine.domain.reports import OrderKind, OrderReport, OrderStatus
from engine.domain.values import OrderSide
from engine.errors import OperatorError, Rejected, RejectReason, Transient
from engine.ports import Venue
from engine.sim.exchange import SimExchange
from engine.sim.venue import SimVenue
from engine.unavailable import UnavailableVenue
from tests.venues import payloads as p
from tests.venues.conftest import VENUES, Harness, Reply, Request, build

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
Json = dict[str, Any]

LIST_ORDERS = {
    "binance": ("GET", "/fapi/v1/openOrders"),
    "bybit": ("GET", "/v5/order/realtime"),
    "bitget": ("GET", "/api/v2/mix/order/orders-pending"),
}
# The request exactly as sent, signing fields left out.
EXPECTED_PARAMS: dict[str, dict[str, str]] = {
    "binance": {},
    "bybit": {"category": "linear", "settleCoin": "USDT", "orderFilter": "Order", "limit": "50"},
    "bitget": {"productType": "USDT-FUTURES", "limit": "100"},
}
SIGNING = frozenset({"timestamp", "signature", "recvWindow"})


# --- each venue's JSON for a plain resting order ---------------------------------------------
def binance_order(order_id: int, client_id: str, *, base: str = "BTC", side: str = "BUY",
                  qty: str = "0.010", price: str = "60000.00", reduce_only: bool = False,
                  order_type: str = "LIMIT", status: str = "NEW") -> Json:
    return {
        "orderId": order_id, "symbol": f"{base}USDT", "status": status,
        "clientOrderId": client_id, "price": price, "avgPrice": "0", "origQty": qty,
        "executedQty": "0", "cumQuote": "0", "timeInForce": "GTC", "type": order_type,
        "reduceOnly": reduce_only, "closePosition": False, "side": side, "positionSide": "BOTH",
        "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False,
        "origType": order_type, "priceMatch": "NONE", "selfTradePreventionMode": "NONE",
        "goodTillDate": 0, "time": p.NOW_MS, "updateTime": p.NOW_MS,
    }


def bybit_order(order_id: str, link_id: str, *, base: str = "BTC", side: str = "Buy",
                qty: str = "0.01", price: str = "60000", reduce_only: bool = False,
                stop_loss: str = "") -> Json:
    return {
        **p.bybit_stop_order(order_id, link_id, base=base, side=side, qty=qty,
                             reduce_only=reduce_only),
        "price": price, "orderType": "Limit", "timeInForce": "GTC", "orderStatus": "New",
        "stopOrderType": "", "triggerPrice": "", "triggerDirection": 0, "triggerBy": "",
        "closeOnTrigger": False, "stopLoss": stop_loss, "slTriggerBy": "",
    }


def bitget_order(order_id: str, client_oid: str, *, base: str = "BTC", side: str = "buy",
                 size: str = "0.01", price: str = "60000", reduce_only: bool = False,
                 preset_sl: str = "") -> Json:
    return {
        "symbol": f"{base}USDT", "size": size, "orderId": order_id, "clientOid": client_oid,
        "baseVolume": "0", "fee": "0", "price": price, "priceAvg": "", "status": "live",
        "side": side, "force": "gtc", "totalProfits": "0", "posSide": "net",
        "marginCoin": "USDT", "quoteVolume": "0", "leverage": "10", "marginMode": "crossed",
        "enterPointSource": "API", "tradeSide": f"{side}_single", "posMode": "one_way_mode",
        "orderType": "limit", "orderSource": "normal", "presetStopSurplusPrice": "",
        "presetStopLossPrice": preset_sl, "reduceOnly": "YES" if reduce_only else "NO",
        "cTime": str(p.NOW_MS), "uTime": str(p.NOW_MS),
    }


def entry_and_take_profit(venue: str) -> list[Json]:
    """A buy limit entry on ETH and a sell reduce-only limit take-profit on BTC."""
    if venue == "binance":
        return [binance_order(101, "entry-1", base="ETH", price="3000.00"),
                binance_order(102, "tp-1", side="SELL", price="70000.00", reduce_only=True)]
    if venue == "bybit":
        return [bybit_order("e1", "entry-1", base="ETH", price="3000"),
                bybit_order("t1", "tp-1", side="Sell", price="70000", reduce_only=True)]
    return [bitget_order("1001", "entry-1", base="ETH", price="3000"),
            bitget_order("1002", "tp-1", side="sell", price="70000", reduce_only=True)]


def answer(venue: str, orders: list[Json]) -> Json | list[Json]:
    if venue == "binance":
        return orders
    if venue == "bybit":
        return p.bybit_ok({"category": "linear", "list": orders, "nextPageCursor": ""})
    return p.bitget_ok({"entrustedList": orders, "endId": orders[-1]["orderId"] if orders
                        else None})


def serve(harness: Harness, orders: list[Json] | Any) -> None:
    """Answer the plain-order listing; on Bybit, resting stops still answer StopOrder queries."""
    method, path = LIST_ORDERS[harness.name]
    plain = orders if not isinstance(orders, list) else answer(harness.name, orders)
    if harness.name != "bybit":
        harness.http.route(method, path, plain)
        return

    def realtime(request: Request) -> Any:
        if request.params.get("orderFilter") == "StopOrder":
            return p.bybit_ok({"category": "linear", "list": harness.account.stops,
                               "nextPageCursor": ""})
        return plain(request) if callable(plain) else plain

    harness.http.route(method, path, realtime)


def unsigned(request: Request) -> dict[str, Any]:
    return {k: v for k, v in request.params.items() if k not in SIGNING}


# --- the request ------------------------------------------------------------------------------
async def test_one_call_lists_the_plain_orders_of_every_symbol(venue: Harness) -> None:
    serve(venue, entry_and_take_profit(venue.name))
    mark = venue.mark()

    orders = await venue.venue.fetch_open_orders()

    (sent,) = venue.since(mark)  # exactly one HTTP request, no symbol
    assert (sent.method, sent.path) == LIST_ORDERS[venue.name]
    assert unsigned(sent) == EXPECTED_PARAMS[venue.name]
    assert {o.symbol for o in orders} == {BTC, ETH}


async def test_binance_lists_without_a_symbol_and_without_the_ccxt_warning(
        binance: Harness) -> None:
    # ccxt raises "fetchOpenOrders() WARNING ..." unless this is off: the dialect turns it off.
    assert binance.http.options["fetchOpenOrders"]["warnWithoutSymbol"] is False
    serve(binance, [])
    assert await binance.venue.fetch_open_orders() == []
    sent = binance.http.last(*LIST_ORDERS["binance"])
    assert "symbol" not in sent.params and not binance.http.sent("GET", "/fapi/v1/openAlgoOrders")


# --- the mapping ------------------------------------------------------------------------------
async def test_limit_entry_and_reduce_only_limit_take_profit(venue: Harness) -> None:
    serve(venue, entry_and_take_profit(venue.name))

    by_client = {o.client_id: o for o in await venue.venue.fetch_open_orders()}

    entry, take_profit = by_client["entry-1"], by_client["tp-1"]
    assert (entry.symbol, entry.kind, entry.side, entry.qty, entry.reduce_only) == (
        ETH, OrderKind.LIMIT, OrderSide.BUY, Decimal("0.01"), False)
    assert (take_profit.symbol, take_profit.kind, take_profit.side, take_profit.qty,
            take_profit.reduce_only) == (BTC, OrderKind.LIMIT, OrderSide.SELL, Decimal("0.01"),
                                         True)
    for order in (entry, take_profit):
        assert order.trigger_price is None  # a limit price is not a trigger
        assert order.status is OrderStatus.OPEN and order.is_resting
        assert isinstance(order.qty, Decimal) and order.order_id
        # The venue's creation time (a zombie's age counts from it), timezone-aware UTC.
        assert order.created_at == datetime.fromtimestamp(p.NOW_MS / 1000, UTC)


@pytest.mark.parametrize("name", ["bybit", "bitget"])
async def test_an_attached_stop_loss_is_not_the_limits_trigger(name: str) -> None:
    harness = await build(name)
    raw = (bybit_order("e1", "entry-1", stop_loss="55000") if name == "bybit"
           else bitget_order("1001", "entry-1", preset_sl="55000"))
    serve(harness, [raw])

    (order,) = await harness.venue.fetch_open_orders()

    assert (order.kind, order.trigger_price) == (OrderKind.LIMIT, None)
    await harness.venue.close()


async def test_trigger_orders_are_never_listed_even_when_the_venue_mixes_them_in(
        venue: Harness) -> None:
    mixed = [*entry_and_take_profit(venue.name), p.resting_stop(venue.name, "777", "vgs777")]
    if venue.name == "binance":  # a legacy conditional order on the regular endpoint
        mixed[-1] = binance_order(777, "vgs777", side="SELL", order_type="STOP_MARKET",
                                  reduce_only=True)
    serve(venue, mixed)

    orders = await venue.venue.fetch_open_orders()

    assert {o.client_id for o in orders} == {"entry-1", "tp-1"}
    assert all(o.kind in (OrderKind.LIMIT, OrderKind.MARKET) for o in orders)


async def test_orders_outside_the_usdt_perpetuals_are_left_out(binance: Harness) -> None:
    usdc = {**binance_order(9, "usdc-1"), "symbol": "BTCUSDC"}
    serve(binance, [usdc, binance_order(10, "usdt-1")])

    assert [o.client_id for o in await binance.venue.fetch_open_orders()] == ["usdt-1"]


# --- paging: one call unless a page is full ---------------------------------------------------
async def test_bybit_follows_the_cursor_past_a_full_page(bybit: Harness) -> None:
    first = [bybit_order(f"o{i}", f"c{i}") for i in range(50)]
    second = [bybit_order("o50", "c50")]

    def realtime(request: Request) -> Any:
        if request.params.get("cursor") is None:
            return p.bybit_ok({"category": "linear", "list": first, "nextPageCursor": "page2"})
        return p.bybit_ok({"category": "linear", "list": second, "nextPageCursor": ""})

    serve(bybit, realtime)
    mark = bybit.mark()

    orders = await bybit.venue.fetch_open_orders()

    assert len(orders) == 51 and len(bybit.since(mark)) == 2
    last = bybit.http.last("GET", "/v5/order/realtime").params
    assert (last["cursor"], last["orderFilter"]) == ("page2", "Order")


async def test_bitget_pages_by_id_past_a_full_page(bitget: Harness) -> None:
    first = [bitget_order(str(2000 - i), f"c{i}") for i in range(100)]
    second = [bitget_order("1800", "c100")]

    def pending(request: Request) -> Any:
        page = first if "idLessThan" not in request.params else second
        return p.bitget_ok({"entrustedList": page, "endId": page[-1]["orderId"]})

    serve(bitget, pending)
    mark = bitget.mark()

    orders = await bitget.venue.fetch_open_orders()

    assert len(orders) == 101 and len(bitget.since(mark)) == 2
    assert bitget.http.last(*LIST_ORDERS["bitget"]).params["idLessThan"] == "1901"


# --- errors go through the usual translation --------------------------------------------------
@pytest.mark.parametrize("name", VENUES)
async def test_auth_failure_is_an_operator_error_without_secrets(name: str) -> None:
    harness = await build(name)
    status, body = p.auth_failure(name)
    serve(harness, Reply(status, body))

    with pytest.raises(OperatorError) as caught:
        await harness.venue.fetch_open_orders()

    assert not any(secret in str(caught.value) for secret in harness.secrets)
    await harness.venue.close()


@pytest.mark.parametrize(("name", "reply"), [
    ("binance", Reply(429, p.binance_error(-1003, "Too many requests; current limit is 2400"))),
    ("bybit", Reply(429, {"retCode": 10006, "retMsg": "Too many visits!"})),
    ("bitget", Reply(429, p.bitget_error("429", "Too Many Requests"))),
])
async def test_rate_limit_is_transient(name: str, reply: Reply) -> None:
    harness = await build(name)
    serve(harness, reply)
    with pytest.raises(Transient):
        await harness.venue.fetch_open_orders()
    await harness.venue.close()


@pytest.mark.parametrize(("name", "reply"), [
    ("binance", Reply(400, p.binance_error(-1102, "Mandatory parameter was not sent"))),
    ("bybit", Reply(200, p.bybit_error(10001, "params error: orderFilter invalid"))),
    ("bitget", Reply(400, p.bitget_error("40034", "Parameter productType does not exist"))),
])
async def test_a_refused_listing_is_rejected(name: str, reply: Reply) -> None:
    harness = await build(name)
    serve(harness, reply)
    with pytest.raises(Rejected) as caught:
        await harness.venue.fetch_open_orders()
    assert caught.value.reason is not RejectReason.ORDER_NOT_FOUND
    await harness.venue.close()


# --- snapshot() is untouched ------------------------------------------------------------------
async def test_snapshot_still_lists_stops_only_in_two_calls(venue: Harness) -> None:
    venue.account.stops = [p.resting_stop(venue.name, "555", "vgs555")]
    serve(venue, entry_and_take_profit(venue.name))
    mark = venue.mark()

    snapshot = await venue.venue.snapshot()

    assert snapshot.calls == 2 == len(venue.since(mark))
    assert [o.client_id for o in snapshot.orders] == ["vgs555"]
    method, path = LIST_ORDERS[venue.name]
    if venue.name != "bybit":  # Bybit shares the path; its stop listing says orderFilter
        assert not [r for r in venue.since(mark) if (r.method, r.path) == (method, path)]


# --- the other Venue implementations --------------------------------------------------------------
def sim_venue() -> SimVenue:
    clock = ManualClock()
    exchange = SimExchange(clock)
    exchange.set_mark(BTC, Decimal("65000"))
    return SimVenue(exchange, clock)


async def test_sim_lists_no_trigger_orders_in_one_call() -> None:
    venue = sim_venue()
    venue.exchange.place_trigger(symbol=BTC, side=OrderSide.SELL, qty=Decimal("0.01"),
                                 trigger_price=Decimal("60000"), kind=OrderKind.STOP_LOSS,
                                 client_id="vgs1")

    assert isinstance(venue, Venue)
    assert await venue.fetch_open_orders() == []
    assert venue.calls == 1


async def test_sim_lists_a_resting_limit_order() -> None:
    venue = sim_venue()
    limit = OrderReport(order_id="L1", client_id="entry-1", symbol=BTC, kind=OrderKind.LIMIT,
                        side=OrderSide.BUY, qty=Decimal("0.01"), trigger_price=None,
                        reduce_only=False, status=OrderStatus.OPEN,
                        updated_at=venue.clock.now())
    venue.exchange.record(limit)  # as if a LIMIT order rested (the sim fills them at once)

    assert await venue.fetch_open_orders() == [limit]


async def test_unavailable_venue_fails_like_every_other_call() -> None:
    venue = UnavailableVenue("acct-x", "no API keys for acct-x")
    assert isinstance(venue, Venue)
    with pytest.raises(OperatorError, match="no API keys"):
        await venue.fetch_open_orders()
