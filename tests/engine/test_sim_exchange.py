"""The simulated exchange: triggers on mark, reduce-only, fills, PnL, determinism, HandApi, and the
SimVenue port in front of it (latency, faults, call counting)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.clock import ManualClock
from engine.domain.ids import OrderPurpose, client_order_id
from engine.domain.reports import (
    FillUpdate,
    MarketOrderRequest,
    OrderKind,
    OrderReport,
    OrderStatus,
    OrderUpdate,
    PositionUpdate,
    StopRequest,
)
from engine.domain.values import OrderSide, PositionSide
from engine.errors import OutcomeUnknown, Rejected, RejectReason, Transient
from engine.sim.exchange import (
    BINANCE_USDM,
    BITGET,
    BYBIT,
    STRICT,
    HandApi,
    SimExchange,
    VenueRules,
)
from engine.sim.venue import FaultPlan, SimVenue
from tests.engine.conftest import BTC, ETH

D = Decimal
STOP_AT = D(64000)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ex(clock: ManualClock) -> SimExchange:
    return SimExchange(clock, seed=1)


@pytest.fixture
def hand(ex: SimExchange) -> HandApi:
    return HandApi(ex)


def buy_price(mark: Decimal, ex: SimExchange, symbol: str = BTC) -> Decimal:
    tick = ex.market(symbol).tick
    return ((mark * (1 + ex.slippage)) / tick).quantize(D(1)) * tick


def sell_price(mark: Decimal, ex: SimExchange, symbol: str = BTC) -> Decimal:
    tick = ex.market(symbol).tick
    return ((mark * (1 - ex.slippage)) / tick).quantize(D(1)) * tick


# --- market fills, fees, PnL ----------------------------------------------------------------
def test_market_buy_fills_at_mark_plus_slippage_with_taker_fee(ex: SimExchange,
                                                               hand: HandApi) -> None:
    order = hand.open(BTC, PositionSide.LONG, D("0.5"))

    assert order.status is OrderStatus.FILLED and order.kind is OrderKind.MARKET
    (fill,) = ex.fills
    assert fill.price == D("65013.0")  # 65000 + 2 bps
    assert fill.fee == (D("65013.0") * D("0.5") * D("0.0005")).quantize(D("0.00000001"))
    assert ex.fees_paid == fill.fee
    pos = ex.positions[BTC]
    assert (pos.side, pos.qty, pos.entry_price) == (PositionSide.LONG, D("0.5"), D("65013.0"))


def test_market_sell_fills_at_mark_minus_slippage(ex: SimExchange, hand: HandApi) -> None:
    hand.open(ETH, PositionSide.SHORT, D("2"))
    assert ex.fills[-1].price == sell_price(D(3200), ex, ETH) == D("3199.36")
    assert ex.positions[ETH].side is PositionSide.SHORT


def test_pnl_on_close_and_unrealized_on_the_report(ex: SimExchange, hand: HandApi) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    ex.set_mark(BTC, D(66000))
    report = ex.position_report(BTC)
    assert report is not None
    assert report.unrealized_pnl == (D(66000) - D("65013.0")) * D("0.5")

    hand.close(BTC)
    exit_price = sell_price(D(66000), ex)
    assert ex.fills[-1].price == exit_price
    assert ex.fills[-1].realized_pnl == (exit_price - D("65013.0")) * D("0.5")
    assert ex.realized_pnl == ex.fills[-1].realized_pnl
    assert BTC not in ex.positions and ex.position_report(BTC) is None


def test_short_pnl_is_positive_when_price_falls(ex: SimExchange, hand: HandApi) -> None:
    hand.open(ETH, PositionSide.SHORT, D("1"))
    entry = ex.positions[ETH].entry_price
    ex.set_mark(ETH, D(3000))
    hand.close(ETH)
    assert ex.realized_pnl == entry - buy_price(D(3000), ex, ETH) > 0


def test_adding_averages_the_entry_and_partial_close_keeps_it(ex: SimExchange,
                                                              hand: HandApi) -> None:
    hand.open(BTC, PositionSide.LONG, D("1"))
    ex.set_mark(BTC, D(67000))
    hand.open(BTC, PositionSide.LONG, D("1"))
    first, second = ex.fills[0].price, ex.fills[1].price
    pos = ex.positions[BTC]
    assert pos.qty == D(2)
    assert pos.entry_price == (first + second) / 2

    hand.close(BTC, D("0.5"))
    assert ex.positions[BTC].qty == D("1.5")
    assert ex.positions[BTC].entry_price == pos.entry_price


# --- triggers on mark -----------------------------------------------------------------------
def test_long_stop_fires_when_mark_falls_to_it(ex: SimExchange, hand: HandApi) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    stop = hand.place_stop(BTC, D(64000))
    assert stop.side is OrderSide.SELL and stop.reduce_only

    ex.set_mark(BTC, D("64000.1"))
    assert ex.orders[stop.order_id].is_resting and BTC in ex.positions
    ex.set_mark(BTC, D(64000))
    assert ex.orders[stop.order_id].status is OrderStatus.TRIGGERED
    assert BTC not in ex.positions
    child = ex.fills[-1]
    assert child.side is OrderSide.SELL and child.qty == D("0.5") and child.reduce_only
    assert child.price == sell_price(D(64000), ex)


def test_short_stop_fires_when_mark_rises_to_it(ex: SimExchange, hand: HandApi) -> None:
    hand.open(ETH, PositionSide.SHORT, D("2"))
    stop = hand.place_stop(ETH, D(3300))
    assert stop.side is OrderSide.BUY
    ex.set_mark(ETH, D("3299.99"))
    assert ex.orders[stop.order_id].is_resting
    ex.set_mark(ETH, D(3350))
    assert ex.orders[stop.order_id].status is OrderStatus.TRIGGERED
    assert ETH not in ex.positions


def test_long_take_profit_fires_above_and_short_take_profit_below(ex: SimExchange,
                                                                  hand: HandApi) -> None:
    hand.open(BTC, PositionSide.LONG, D("1"))
    hand.open(ETH, PositionSide.SHORT, D("1"))
    tp_long = ex.place_trigger(symbol=BTC, side=OrderSide.SELL, qty=D("0.4"),
                               trigger_price=D(66000), kind=OrderKind.TAKE_PROFIT, client_id=None)
    tp_short = ex.place_trigger(symbol=ETH, side=OrderSide.BUY, qty=D("0.4"),
                                trigger_price=D(3100), kind=OrderKind.TAKE_PROFIT, client_id=None)
    ex.set_mark(BTC, D(64000))  # the wrong way for a long's take-profit
    ex.set_mark(ETH, D(3300))
    assert ex.orders[tp_long.order_id].is_resting and ex.orders[tp_short.order_id].is_resting

    ex.set_mark(BTC, D(66000))
    ex.set_mark(ETH, D(3100))
    assert ex.orders[tp_long.order_id].status is OrderStatus.TRIGGERED
    assert ex.orders[tp_short.order_id].status is OrderStatus.TRIGGERED
    assert ex.positions[BTC].qty == D("0.6") and ex.positions[ETH].qty == D("0.6")


@pytest.mark.parametrize(("kind", "side", "price"), [
    (OrderKind.STOP_LOSS, OrderSide.SELL, D(65000)),  # long stop at the mark
    (OrderKind.STOP_LOSS, OrderSide.SELL, D(65100)),  # long stop above the mark
    (OrderKind.STOP_LOSS, OrderSide.BUY, D(64900)),  # short stop below the mark
    (OrderKind.TAKE_PROFIT, OrderSide.SELL, D(64900)),  # long take-profit below the mark
])
def test_a_trigger_already_through_the_mark_is_rejected(ex: SimExchange, kind: OrderKind,
                                                        side: OrderSide, price: Decimal) -> None:
    with pytest.raises(Rejected) as err:
        ex.place_trigger(symbol=BTC, side=side, qty=D("0.1"), trigger_price=price, kind=kind,
                         client_id=None)
    assert err.value.reason is RejectReason.WOULD_TRIGGER_IMMEDIATELY
    assert not ex.orders


def test_amending_a_stop_through_the_mark_is_rejected_and_leaves_it(ex: SimExchange,
                                                                    hand: HandApi) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    stop = hand.place_stop(BTC, D(64000))
    with pytest.raises(Rejected) as err:
        ex.amend_trigger(stop.order_id, D(65500), D("0.5"))
    assert err.value.reason is RejectReason.WOULD_TRIGGER_IMMEDIATELY
    assert ex.orders[stop.order_id] == stop

    amended = ex.amend_trigger(stop.order_id, D(64500), D("0.3"))
    assert (amended.order_id, amended.trigger_price, amended.qty) == (stop.order_id, D(64500),
                                                                      D("0.3"))


# --- reduce-only ---------------------------------------------------------------------------
def test_reduce_only_stop_larger_than_the_position_closes_it_and_never_flips(
        ex: SimExchange, hand: HandApi) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    hand.place_stop(BTC, D(64000), qty=D("2"))
    ex.set_mark(BTC, D(63000))
    assert BTC not in ex.positions
    assert ex.fills[-1].qty == D("0.5")


def test_reduce_only_trigger_on_a_flat_symbol_fires_into_nothing(ex: SimExchange,
                                                                 hand: HandApi) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    stop = hand.place_stop(BTC, D(64000))
    hand.close(BTC)
    fills = len(ex.fills)
    ex.set_mark(BTC, D(63000))
    assert ex.orders[stop.order_id].status is OrderStatus.TRIGGERED
    assert BTC not in ex.positions and len(ex.fills) == fills


def test_reduce_only_trigger_on_the_wrong_side_never_increases(ex: SimExchange,
                                                               hand: HandApi) -> None:
    hand.open(BTC, PositionSide.SHORT, D("0.5"))
    ex.place_trigger(symbol=BTC, side=OrderSide.SELL, qty=D("0.5"), trigger_price=D(64000),
                     kind=OrderKind.STOP_LOSS, client_id=None)
    ex.set_mark(BTC, D(63000))
    assert ex.positions[BTC].qty == D("0.5") and ex.positions[BTC].side is PositionSide.SHORT


def test_reduce_only_market_orders_never_open_or_increase(ex: SimExchange, hand: HandApi) -> None:
    with pytest.raises(Rejected) as err:
        ex.market_order(symbol=BTC, side=OrderSide.SELL, qty=D("0.1"), reduce_only=True,
                        client_id=None)
    assert err.value.reason is RejectReason.REDUCE_ONLY_REJECTED
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    with pytest.raises(Rejected):
        ex.market_order(symbol=BTC, side=OrderSide.BUY, qty=D("0.1"), reduce_only=True,
                        client_id=None)
    order = ex.market_order(symbol=BTC, side=OrderSide.SELL, qty=D(3), reduce_only=True,
                            client_id=None)
    assert order.qty == D("0.5") and BTC not in ex.positions


def test_a_plain_market_order_through_zero_flips_the_position(ex: SimExchange,
                                                              hand: HandApi) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    ex.market_order(symbol=BTC, side=OrderSide.SELL, qty=D("0.8"), reduce_only=False,
                    client_id=None)
    assert ex.positions[BTC].side is PositionSide.SHORT and ex.positions[BTC].qty == D("0.3")


# --- validation and ids ---------------------------------------------------------------------
def test_client_ids_are_unique_for_ever(ex: SimExchange, hand: HandApi) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    first = ex.place_trigger(symbol=BTC, side=OrderSide.SELL, qty=D("0.5"),
                             trigger_price=D(64000), kind=OrderKind.STOP_LOSS, client_id="vgsA")
    ex.cancel(first.order_id)
    with pytest.raises(Rejected) as err:
        ex.place_trigger(symbol=BTC, side=OrderSide.SELL, qty=D("0.5"), trigger_price=D(64000),
                         kind=OrderKind.STOP_LOSS, client_id="vgsA")
    assert err.value.reason is RejectReason.DUPLICATE_CLIENT_ID
    found = ex.find_by_client_id("vgsA")
    assert found is not None and found.status is OrderStatus.CANCELLED


def _stop(ex: SimExchange, client_id: str, price: Decimal = STOP_AT) -> OrderReport:
    return ex.place_trigger(symbol=BTC, side=OrderSide.SELL, qty=D("0.5"), trigger_price=price,
                            kind=OrderKind.STOP_LOSS, client_id=client_id)


def _close(ex: SimExchange, client_id: str) -> OrderReport:
    return ex.market_order(symbol=BTC, side=OrderSide.SELL, qty=D("0.5"), reduce_only=True,
                           client_id=client_id)


def test_binance_client_ids_are_unique_only_among_open_orders(clock: ManualClock) -> None:
    """Issue 15 finding 5: on Binance USD-M a filled close's id is free again, so resending it
    executes a second close; only an id still open is refused."""
    ex = SimExchange(clock, rules=BINANCE_USDM)
    hand = HandApi(ex)
    hand.open(BTC, PositionSide.LONG, D("1"))
    first = _close(ex, "vgc1")
    second = _close(ex, "vgc1")  # same id, executed again
    assert first.status is second.status is OrderStatus.FILLED
    assert first.order_id != second.order_id and BTC not in ex.positions
    assert [f.client_id for f in ex.fills].count("vgc1") == 2
    assert ex.find_by_client_id("vgc1") == second  # a lookup answers the newest

    hand.open(BTC, PositionSide.LONG, D("0.5"))
    resting = _stop(ex, "vgs1")
    with pytest.raises(Rejected) as err:
        _stop(ex, "vgs1", D(63000))  # still open: refused
    assert err.value.reason is RejectReason.DUPLICATE_CLIENT_ID
    ex.cancel(resting.order_id)
    again = _stop(ex, "vgs1", D(63000))  # cancelled: free again
    assert again.is_resting and again.order_id != resting.order_id


@pytest.mark.parametrize("rules", [STRICT, BYBIT, BITGET], ids=lambda r: r.name)
def test_bybit_bitget_and_the_default_never_take_an_id_twice(clock: ManualClock,
                                                              rules: VenueRules) -> None:
    ex = SimExchange(clock, rules=rules)
    HandApi(ex).open(BTC, PositionSide.LONG, D("1"))
    _close(ex, "vgc1")
    with pytest.raises(Rejected) as err:
        _close(ex, "vgc1")
    assert err.value.reason is RejectReason.DUPLICATE_CLIENT_ID
    assert ex.positions[BTC].qty == D("0.5") and len(ex.fills) == 2


def test_the_default_rules_are_the_strictest() -> None:
    assert SimExchange(ManualClock()).rules is STRICT
    assert STRICT.client_id_scope is BYBIT.client_id_scope is BITGET.client_id_scope
    assert STRICT.client_id_pattern.pattern == BYBIT.client_id_pattern.pattern


@pytest.mark.parametrize(("rules", "client_id"), [
    (STRICT, "a" * 37), (STRICT, "vg.s1"), (STRICT, ""), (BYBIT, "vg:s1"),
    (BINANCE_USDM, "a" * 37), (BINANCE_USDM, "vg s1"), (BITGET, "a" * 41)])
def test_a_client_id_outside_the_venue_format_is_refused_and_changes_nothing(
        clock: ManualClock, rules: VenueRules, client_id: str) -> None:
    ex = SimExchange(clock, rules=rules)
    HandApi(ex).open(BTC, PositionSide.LONG, D("1"))
    orders = dict(ex.orders)
    for place in (_stop, _close):
        with pytest.raises(Rejected) as err:
            place(ex, client_id)
        assert err.value.reason is RejectReason.INVALID_ORDER
        assert rules.name in str(err.value)
    assert ex.orders == orders and ex.positions[BTC].qty == D("1")


def test_binance_accepts_its_wider_alphabet_and_our_ids_fit_every_venue() -> None:
    ours = client_order_id("acct", BTC, 3, OrderPurpose.STOP, 9)
    for rules in (STRICT, BINANCE_USDM, BYBIT, BITGET):
        rules.check_client_id(ours)
    BINANCE_USDM.check_client_id("x-Ab.c:d/e_f-1")


@pytest.mark.parametrize(("qty", "price"), [(D("0.0005"), D(64000)), (D("0.0015"), D(64000)),
                                            (D("0.5"), D("64000.05")), (D("0.5"), D(0))])
def test_qty_and_price_must_sit_on_lot_and_tick(ex: SimExchange, qty: Decimal,
                                                price: Decimal) -> None:
    with pytest.raises(Rejected) as err:
        ex.place_trigger(symbol=BTC, side=OrderSide.SELL, qty=qty, trigger_price=price,
                         kind=OrderKind.STOP_LOSS, client_id=None)
    assert err.value.reason in (RejectReason.INVALID_ORDER, RejectReason.WOULD_TRIGGER_IMMEDIATELY)
    assert not ex.orders


def test_unknown_market_and_cancel_of_a_gone_order(ex: SimExchange, hand: HandApi) -> None:
    with pytest.raises(Rejected) as err:
        ex.market("NOPE/USDT:USDT")
    assert err.value.reason is RejectReason.BAD_SYMBOL
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    stop = hand.place_stop(BTC, D(64000))
    hand.cancel(stop.order_id)
    with pytest.raises(Rejected) as err:
        hand.cancel(stop.order_id)
    assert err.value.reason is RejectReason.ORDER_NOT_FOUND


# --- determinism --------------------------------------------------------------------------
def _walk(seed: int, steps: int = 200) -> list[dict[str, Decimal]]:
    ex = SimExchange(ManualClock(), seed=seed)
    path = []
    for _ in range(steps):
        ex.random_walk()
        path.append(dict(ex.marks))
    return path


def test_same_seed_same_mark_path_different_seed_different_path() -> None:
    a, b, c = _walk(42), _walk(42), _walk(43)
    assert a == b
    assert a != c
    assert a[-1] != a[0]  # it does move


def test_set_mark_rounds_on_the_tick_and_stays_positive(ex: SimExchange) -> None:
    ex.set_mark(BTC, D("65000.04"))
    assert ex.marks[BTC] == D("65000.0")
    ex.set_mark(BTC, D(-5))
    assert ex.marks[BTC] == ex.market(BTC).tick


# --- HandApi and the event stream ---------------------------------------------------------
def test_hand_api_acts_like_a_person_in_the_app(ex: SimExchange, hand: HandApi) -> None:
    queue = ex.subscribe()
    hand.open(BTC, PositionSide.LONG, D("0.5009"))  # floored to the lot
    assert ex.positions[BTC].qty == D("0.5")
    stop = hand.place_stop(BTC, D(64000))
    assert stop.client_id is None and stop.qty == D("0.5") and stop.kind is OrderKind.STOP_LOSS
    hand.close(BTC, D("0.2"))
    assert ex.positions[BTC].qty == D("0.3")
    assert hand.close(BTC) is not None and hand.close(BTC) is None
    hand.cancel(stop.order_id)

    kinds = []
    while not queue.empty():
        kinds.append(type(queue.get_nowait()))
    assert kinds == [FillUpdate, PositionUpdate, OrderUpdate,  # open
                     OrderUpdate,  # stop placed
                     FillUpdate, PositionUpdate, OrderUpdate,  # partial close
                     FillUpdate, PositionUpdate, OrderUpdate,  # close
                     OrderUpdate]  # cancel
    ex.unsubscribe(queue)
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    assert queue.empty()


# --- SimVenue: the port in front of it ----------------------------------------------------
async def test_snapshot_costs_two_calls_whatever_the_number_of_positions(
        ex: SimExchange, hand: HandApi, clock: ManualClock) -> None:
    venue = SimVenue(ex, clock)
    assert (await venue.snapshot()).calls == 2 and venue.calls == 2
    for symbol in ex.markets:
        hand.open(symbol, PositionSide.LONG, ex.market(symbol).min_qty * 10)
    snap = await venue.snapshot()
    assert snap.calls == 2 and venue.calls == 4 and len(snap.positions) == len(ex.markets)


@pytest.mark.parametrize(("rules", "calls"), [(STRICT, 2), (BYBIT, 4), (BITGET, 3)],
                         ids=lambda v: getattr(v, "name", str(v)))
async def test_listing_costs_a_call_per_page_where_the_venue_pages(
        clock: ManualClock, rules: VenueRules, calls: int) -> None:
    ex = SimExchange(clock, rules=rules)
    hand = HandApi(ex)
    hand.open(BTC, PositionSide.LONG, D("1"))
    mark = ex.marks[BTC]
    for i in range(101):  # 101 resting stops: 3 pages of 50, 2 of 100
        hand.place_stop(BTC, mark - 10 - i, D("0.001"))
    venue = SimVenue(ex, clock)
    snap = await venue.snapshot()
    assert snap.calls == calls and venue.calls == calls and len(snap.orders) == 101
    assert venue.calls_by_method["fetch_open_orders"] == calls - 1


async def test_late_positions_are_hidden_from_snapshots_until_old_enough(
        ex: SimExchange, hand: HandApi, clock: ManualClock) -> None:
    venue = SimVenue(ex, clock, faults=FaultPlan(late_positions_seconds=3))
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    assert (await venue.snapshot()).positions == ()
    await clock.advance(3.5)
    assert [p.symbol for p in (await venue.snapshot()).positions] == [BTC]


async def test_lost_response_executes_but_reports_a_timeout(ex: SimExchange, hand: HandApi,
                                                            clock: ManualClock) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    venue = SimVenue(ex, clock, faults=FaultPlan(lost_response=1.0))
    request = StopRequest(BTC, PositionSide.LONG, D("0.5"), D(64000), "vgs1")
    with pytest.raises(OutcomeUnknown):
        await venue.place_stop(request)
    found = await venue.find_order(BTC, "vgs1")
    assert found is not None and found.is_resting


async def test_an_error_after_execution_looks_transient_but_the_order_ran(
        ex: SimExchange, hand: HandApi, clock: ManualClock) -> None:
    """Issue 15 finding 5: an HTTP 5xx arrives as a transient error though the close ran."""
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    venue = SimVenue(ex, clock, faults=FaultPlan(error_after=1.0))
    with pytest.raises(Transient):
        await venue.market_order(MarketOrderRequest(BTC, OrderSide.SELL, D("0.5"), True, "vgc1"))
    found = ex.find_by_client_id("vgc1")
    assert found is not None and found.status is OrderStatus.FILLED and BTC not in ex.positions


@pytest.mark.parametrize(("plan", "error"), [
    (FaultPlan(transient=1.0), Transient),
    (FaultPlan(timeout_before=1.0), OutcomeUnknown),
    (FaultPlan(reject=1.0), Rejected),
])
async def test_faults_before_execution_leave_nothing_on_the_venue(
        ex: SimExchange, hand: HandApi, clock: ManualClock, plan: FaultPlan,
        error: type[Exception]) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    venue = SimVenue(ex, clock, faults=plan)
    with pytest.raises(error):
        await venue.market_order(MarketOrderRequest(BTC, OrderSide.SELL, D("0.5"), True, "vgc1"))
    assert ex.find_by_client_id("vgc1") is None and ex.positions[BTC].qty == D("0.5")
    assert venue.calls_by_method == {"market_order": 1} and venue.faults_injected == 1


async def test_latency_is_spent_on_the_clock(ex: SimExchange, clock: ManualClock) -> None:
    venue = SimVenue(ex, clock, latency=0.05)
    task = asyncio.ensure_future(venue.snapshot())
    await asyncio.sleep(0)  # the snapshot starts and sleeps on the clock: two calls, 50 ms each
    await clock.advance(0.06)
    assert not task.done()
    await clock.advance(0.05)
    assert task.done() and task.result().calls == 2


async def test_amend_is_refused_without_the_capability_and_streams_can_be_off(
        ex: SimExchange, hand: HandApi, clock: ManualClock) -> None:
    hand.open(BTC, PositionSide.LONG, D("0.5"))
    stop = hand.place_stop(BTC, D(64000))
    venue = SimVenue(ex, clock, amend_in_place=False, streaming=False)
    assert not venue.capabilities.amend_stop_in_place and not venue.capabilities.streams
    with pytest.raises(Rejected):
        await venue.amend_stop(stop, D(64100), D("0.5"))
    assert [e async for e in venue.events()] == []
    assert venue.resolve_symbol("btcusdt") == BTC
    with pytest.raises(Rejected):
        venue.resolve_symbol("NOPE")


async def test_stream_latency_is_a_transport_delay_not_a_backlog(
        ex: SimExchange, hand: HandApi, clock: ManualClock) -> None:
    venue = SimVenue(ex, clock, latency=0.1)
    stream = venue.events()
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    for symbol in ex.markets:  # a burst: 5 opens, 15 events at the same instant
        hand.open(symbol, PositionSide.LONG, ex.market(symbol).min_qty * 10)
    await clock.advance(0.04)
    assert not first.done()
    await clock.advance(0.01)
    assert first.done()
    received = [first.result()]
    for _ in range(14):  # all of them are due by now: none waits behind another
        received.append(await asyncio.wait_for(stream.__anext__(), 1))
    assert clock.monotonic() == 0.05 and len(received) == 15
    await stream.aclose()
