"""Every case of issue #3 end to end: AccountGuard -> supervisors -> SimVenue -> SimExchange, with
the journal, positions and state in real SQLite files under tmp_path."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from decimal import Decimal

import pytest

from engine.clock import ManualClock
from engine.domain import events as ev
from engine.domain.ids import OrderPurpose, client_order_id, is_ours
from engine.domain.position import PositionState
from engine.domain.reports import OrderKind, OrderStatus, PositionReport, VenueSnapshot
from engine.domain.values import OrderSide, PositionSide
from engine.errors import OperatorError, OutcomeUnknown, Rejected, RejectReason, Transient
from engine.protection.policy import CrossedPolicy, FixedDistancePricer, ProtectionPolicy
from engine.protection.view import AccountView
from engine.retry import retry_transient
from engine.sim.venue import FaultPlan
from storage.repositories import PositionRepo, StateRepo
from tests.engine.conftest import (
    ACCOUNT,
    BTC,
    ETH,
    SOL,
    XRP,
    RecordingClock,
    Rig,
    RigFactory,
    SpyRigFactory,
    SpyVenue,
    StopWatch,
    default_policy,
    drive,
    eventually,
)
from tests.engine.test_reconcile import order

D = Decimal
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


def cid(symbol: str, generation: int, seq: int,
        purpose: OrderPurpose = OrderPurpose.STOP) -> str:
    return client_order_id(ACCOUNT, symbol, generation, purpose, seq)


def protective(rig: Rig, symbol: str) -> list:
    return [o for o in rig.exchange.open_orders()
            if o.symbol == symbol and (o.kind is OrderKind.STOP_LOSS or o.reduce_only)]


def rig_stop_cids(rig: Rig, symbol: str) -> list[str | None]:
    return [o.client_id for o in rig.stops(symbol)]


def assert_one_stop_sized(rig: Rig, symbol: str) -> None:
    pos = rig.exchange.positions[symbol]
    stops = rig.stops(symbol)
    assert len(stops) == 1, stops
    (stop,) = stops
    assert stop.is_stop_for(pos.side) and stop.reduce_only and stop.qty == pos.qty


# --- position without a stop / opened by hand ------------------------------------------------
async def test_hand_opened_position_is_adopted_and_gets_one_reduce_only_stop(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))

    report = await rig.guard.reconcile_now()

    (stop,) = rig.stops(BTC)
    entry = rig.exchange.positions[BTC].entry_price  # 65013.0
    assert stop.trigger_price == D("63712.8")  # 2 % below entry, rounded up on the 0.1 tick
    assert stop.trigger_price == (entry * D("0.98") / D("0.1")).to_integral_value(
        rounding="ROUND_CEILING") * D("0.1")
    assert (stop.side, stop.qty, stop.reduce_only) == (OrderSide.SELL, D("0.5"), True)
    assert stop.client_id == cid(BTC, 1, 0)  # deterministic
    assert await rig.kinds() == ["position_adopted", "stop_missing", "stop_intent", "stop_placed"]
    adopted, placed = (await rig.rows("position_adopted"))[0], (await rig.rows("stop_placed"))[0]
    assert adopted["generation"] == 1 and adopted["qty"] == "0.5"
    assert placed["client_id"] == stop.client_id and placed["order_id"] == stop.order_id
    assert report.unprotected_before == (BTC,) and report.unprotected_after == ()
    assert [e.kind for e in report.events] == await rig.kinds()

    (saved,) = await PositionRepo(rig.db).load(ACCOUNT)
    assert saved.state is PositionState.PROTECTED and saved.stop is not None
    assert saved.stop.order_id == stop.order_id and saved.stop_seq == 1
    assert rig.metrics.registry.get_sample_value(
        "vigil_positions_unprotected", {"account": ACCOUNT}) == 0

    # The stop triggers on the mark.
    rig.exchange.set_mark(BTC, D("63712.8"))
    assert BTC not in rig.exchange.positions


async def test_short_gets_its_stop_above_with_the_per_symbol_distance(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory(policy=ProtectionPolicy(
        FixedDistancePricer(D(2), {ETH: D("1.5")})))
    rig.hand.open(ETH, SHORT, D("2"))
    await rig.guard.reconcile_now()
    (stop,) = rig.stops(ETH)
    entry = rig.exchange.positions[ETH].entry_price
    assert stop.side is OrderSide.BUY and stop.qty == D(2)
    assert stop.trigger_price == (entry * D("1.015") / D("0.01")).to_integral_value(
        rounding="ROUND_FLOOR") * D("0.01")


async def test_stop_intent_is_journaled_before_the_venue_sees_the_order(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig(amend_in_place=False)
    checked: list[tuple[str, bool]] = []

    async def intent_first(method: str, arg: object) -> None:
        if method in ("place_stop", "market_order"):
            kind = "stop_intent" if method == "place_stop" else "close_intent"
            rows = await rig.rows(kind)
            checked.append((method, any(r["client_id"] == arg.client_id  # type: ignore[attr-defined]
                                        for r in rows)))
            assert rig.exchange.find_by_client_id(arg.client_id) is None  # type: ignore[attr-defined]

    spy.before = intent_first
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    rig.hand.open(BTC, LONG, D("0.3"))  # resize: place-new-then-cancel, a second intent
    await rig.guard.reconcile_now()
    for stop in rig.stops(BTC):
        rig.hand.cancel(stop.order_id)  # our stop cancelled by hand, then the mark falls
    rig.exchange.set_mark(BTC, D(60000))  # through the stop we remember: crossed -> close
    await rig.guard.reconcile_now()

    assert checked == [("place_stop", True), ("place_stop", True), ("market_order", True)]
    # and in the journal, every intent row precedes the row of what the venue returned
    rows = await rig.rows("stop_intent", "stop_placed")
    for intent, placed in zip(rows[::2], rows[1::2], strict=True):
        assert intent["kind"] == "stop_intent" and placed["kind"] == "stop_placed"
        assert intent["client_id"] == placed["client_id"] and intent["id"] < placed["id"]
        order = rig.exchange.find_by_client_id(placed["client_id"])
        assert order is not None and order.order_id == placed["order_id"]


# --- stop already crossed ------------------------------------------------------------------
async def test_crossed_stop_closes_once_reduce_only_and_records_the_close(
        rig_factory: RigFactory) -> None:
    """Default policy: reduce-only market close. Streaming off: the close must not run twice."""
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    rig.exchange.set_mark(BTC, D(63000))  # the 2 % stop (63712.8) is already through the mark

    await rig.guard.reconcile_now()
    for _ in range(3):
        await rig.guard.reconcile_now()

    ours = [o for o in rig.exchange.orders.values() if is_ours(o.client_id)]
    assert len(ours) == 1
    (close,) = ours
    assert close.kind is OrderKind.MARKET and close.reduce_only and close.side is OrderSide.SELL
    assert close.client_id == cid(BTC, 1, 0, OrderPurpose.CLOSE)
    assert BTC not in rig.exchange.positions and rig.exchange.open_orders() == []
    assert await rig.kinds() == ["position_adopted", "stop_missing", "stop_crossed",
                                 "close_intent", "close_submitted", "position_closed"]
    crossed = (await rig.rows("stop_crossed"))[0]
    assert (crossed["action"], D(crossed["stop_price"]), D(crossed["mark_price"])) == (
        "close", D("63712.8"), D(63000))
    assert BTC not in rig.guard.supervisors and await PositionRepo(rig.db).load(ACCOUNT) == []


async def test_crossed_stop_with_tighten_policy_rests_just_off_the_mark(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory(policy=default_policy(crossed=CrossedPolicy.TIGHTEN))
    rig.hand.open(BTC, LONG, D("0.5"))
    rig.exchange.set_mark(BTC, D(63000))
    await rig.guard.reconcile_now()

    (stop,) = rig.stops(BTC)
    assert stop.trigger_price == D("62874.0")  # 63000 - 0.2 %
    assert BTC in rig.exchange.positions
    crossed = (await rig.rows("stop_crossed"))[0]
    assert crossed["action"] == "tighten" and crossed["stop_price"] == "63712.8"


@pytest.mark.parametrize("crossed", [CrossedPolicy.CLOSE, CrossedPolicy.TIGHTEN])
async def test_venue_says_would_trigger_immediately(spy_rig: SpyRigFactory,
                                                    crossed: CrossedPolicy) -> None:
    """The snapshot's mark was fine, but the market moved through the stop before it arrived."""
    rig, spy = await spy_rig(policy=default_policy(crossed=crossed))

    async def crash_the_market(method: str, arg: object) -> None:
        if method == "place_stop" and rig.exchange.marks[BTC] > D(63000):
            rig.exchange.set_mark(BTC, D(63000))

    spy.before = crash_the_market
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()

    kinds = await rig.kinds()
    assert "stop_rejected" not in kinds
    if crossed is CrossedPolicy.CLOSE:
        assert BTC not in rig.exchange.positions
        assert kinds[-4:] == ["stop_crossed", "close_intent", "close_submitted",
                              "position_closed"]
    else:
        (stop,) = rig.stops(BTC)
        assert stop.trigger_price == D("62874.0")  # from the venue's mark, not the stale one
        assert kinds[-3:] == ["stop_crossed", "stop_intent", "stop_placed"]
        assert rig.exchange.positions[BTC].qty == D("0.5")


# --- position size changed -----------------------------------------------------------------
@pytest.mark.parametrize("change", ["add", "partial_close"])
async def test_resize_amends_in_place_where_the_venue_can(rig_factory: RigFactory,
                                                          change: str) -> None:
    rig = await rig_factory(amend_in_place=True)
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (before,) = rig.stops(BTC)
    watch = StopWatch.attach(rig.exchange, rig.clock)

    if change == "add":
        rig.hand.open(BTC, LONG, D("0.3"))
    else:
        rig.hand.close(BTC, D("0.2"))
    await rig.guard.reconcile_now()

    watch.drain()
    (after,) = rig.stops(BTC)
    new_qty = rig.exchange.positions[BTC].qty
    assert after.order_id == before.order_id and after.qty == new_qty
    assert after.trigger_price == before.trigger_price
    assert (await rig.kinds())[-3:] == ["position_resized", "stop_intent", "stop_amended"]
    intent = (await rig.rows("stop_intent"))[-1]
    assert intent["action"] == "amend" and intent["qty"] == str(new_qty)
    assert watch.gaps == []


async def test_resize_without_amend_places_the_new_stop_before_cancelling_the_old(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory(amend_in_place=False)
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (old,) = rig.stops(BTC)
    watch = StopWatch.attach(rig.exchange, rig.clock)

    rig.hand.open(BTC, LONG, D("0.3"))
    await rig.guard.reconcile_now()
    rig.hand.close(BTC, D("0.6"))
    await rig.guard.reconcile_now()

    watch.drain()
    assert watch.gaps == []  # not one mutation left the position without a resting stop
    (new,) = rig.stops(BTC)
    assert new.qty == D("0.2") and new.trigger_price == old.trigger_price
    assert rig.exchange.orders[old.order_id].status is OrderStatus.CANCELLED
    assert (await rig.kinds())[-10:] == [
        "position_resized", "stop_intent", "stop_placed", "cancel_intent", "stop_cancelled",
        "position_resized", "stop_intent", "stop_placed", "cancel_intent", "stop_cancelled"]
    replaced = (await rig.rows("stop_placed"))[-1]
    assert replaced["time_to_protect"] is None  # a replacement is not a fix of a missing stop
    assert (await rig.rows("stop_cancelled"))[-1]["reason"] == "replaced"
    assert (await rig.rows("stop_intent"))[-1]["action"] == "replace"


# --- more than one stop ------------------------------------------------------------------------
async def test_extra_stops_are_cancelled_and_ours_kept(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (ours,) = rig.stops(BTC)
    extra = [rig.hand.place_stop(BTC, D(64000)), rig.hand.place_stop(BTC, D(62000))]

    await rig.guard.reconcile_now()

    assert rig.stops(BTC) == [ours]
    assert all(rig.exchange.orders[o.order_id].status is OrderStatus.CANCELLED for o in extra)
    cancelled = await rig.rows("stop_cancelled")
    assert {(r["order_id"], r["reason"]) for r in cancelled} == {
        (o.order_id, "duplicate") for o in extra}


async def test_without_ours_the_most_protective_stop_is_adopted(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    rig.hand.open(ETH, SHORT, D("2"))
    low = rig.hand.place_stop(ETH, D(3300))
    high = rig.hand.place_stop(ETH, D(3400))

    await rig.guard.reconcile_now()

    assert rig.stops(ETH) == [low]  # a short's most protective stop is the lowest
    assert rig.exchange.orders[high.order_id].status is OrderStatus.CANCELLED
    assert await rig.kinds() == ["position_adopted", "stop_adopted", "cancel_intent",
                                 "stop_cancelled"]
    assert rig.ttp_count() == 0  # nothing was missing


# --- zombies ---------------------------------------------------------------------------------
async def test_zombies_are_cancelled_after_the_grace_period(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    rig.hand.open(SOL, LONG, D("10"))
    stop = rig.hand.place_stop(SOL, D(140))
    tp = rig.exchange.place_trigger(symbol=SOL, side=OrderSide.SELL, qty=D(10),
                                    trigger_price=D(170), kind=OrderKind.TAKE_PROFIT,
                                    client_id=None)
    rig.hand.close(SOL)  # never seen open by the guard: its orders are zombies

    await rig.guard.reconcile_now()
    await rig.clock.advance(29)
    await rig.guard.reconcile_now()
    assert len(protective(rig, SOL)) == 2 and "zombie_cancelled" not in await rig.kinds()

    await rig.clock.advance(1)
    report = await rig.guard.reconcile_now()
    assert protective(rig, SOL) == []
    zombies = await rig.rows("zombie_cancelled")
    assert {(z["order_id"], z["order_kind"]) for z in zombies} == {
        (stop.order_id, "stop_loss"), (tp.order_id, "take_profit")}
    assert [e.kind for e in report.events] == ["zombie_cancelled"] * 2
    assert rig.metrics.registry.get_sample_value(
        "vigil_zombies_cancelled_total", {"account": ACCOUNT}) == 2


async def test_a_zombie_candidate_that_gets_a_position_is_left_alone(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    rig.hand.open(SOL, LONG, D("10"))
    stop = rig.hand.place_stop(SOL, D(140))
    rig.hand.close(SOL)
    await rig.guard.reconcile_now()
    await rig.clock.advance(20)
    rig.hand.open(SOL, LONG, D("10"))  # the stop protects something again
    await rig.guard.reconcile_now()
    await rig.clock.advance(20)
    await rig.guard.reconcile_now()
    assert rig.stops(SOL) == [rig.exchange.orders[stop.order_id]]
    assert "zombie_cancelled" not in await rig.kinds()


# --- position gone from the venue ------------------------------------------------------------
async def test_closed_by_hand_records_pnl_cancels_leftovers_and_retires(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (stop,) = rig.stops(BTC)
    rig.exchange.set_mark(BTC, D(66000))
    await rig.guard.reconcile_now()  # the guard sees the mark move
    rig.hand.close(BTC)

    await rig.guard.reconcile_now()

    assert rig.exchange.orders[stop.order_id].status is OrderStatus.CANCELLED
    assert (await rig.kinds())[-2:] == ["stop_cancelled", "position_closed"]
    closed = (await rig.rows("position_closed"))[0]
    entry = rig.exchange.fills[0].price
    # streaming off: no fills seen, so PnL is estimated from the last mark the guard saw
    assert D(closed["exit_price"]) == D(66000)
    assert D(closed["realized_pnl"]) == (D(66000) - entry) * D("0.5")
    assert (await rig.rows("stop_cancelled"))[0]["reason"] == "position_closed"
    assert BTC not in rig.guard.supervisors
    assert await PositionRepo(rig.db).load(ACCOUNT) == []

    # Re-opened later: a new generation, new client ids, protected again.
    rig.hand.open(BTC, LONG, D("0.2"))
    await rig.guard.reconcile_now()
    (again,) = rig.stops(BTC)
    assert again.client_id == cid(BTC, 2, 0) and again.qty == D("0.2")


async def test_a_view_that_wrongly_says_flat_never_costs_the_stop(
        rig_factory: RigFactory) -> None:
    """Flatness is confirmed with the venue before any stop of the position goes."""
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (stop,) = rig.stops(BTC)
    rig.guard.view.set_position(BTC, None)  # a glitch: a lost or partial update
    await rig.guard.supervisor(BTC).ensure()
    assert rig.stops(BTC) == [stop]
    assert "position_closed" not in await rig.kinds()
    assert rig.guard.view.position(BTC) is not None  # the venue's answer is back in the view
    assert rig.guard.supervisors[BTC].known is not None


async def test_stopped_out_position_is_recorded_with_the_pnl_from_fills(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory(streaming=True)
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        rig.hand.open(ETH, SHORT, D("2"))
        await eventually(lambda: len(rig.stops(ETH)) == 1)
        rig.exchange.set_mark(ETH, D(3300))  # up through the short's stop at 3263.36
        await eventually(lambda: BTC not in rig.guard.supervisors
                         and ETH not in rig.guard.supervisors)
        await eventually(lambda: any(isinstance(e, ev.PositionClosed) for e in rig.events))
    finally:
        await rig.guard.stop()
        run.cancel()
    closed = next(e for e in rig.events if isinstance(e, ev.PositionClosed))
    fills = rig.exchange.fills
    assert closed.exit_price == fills[-1].price
    assert closed.realized_pnl == sum((f.realized_pnl - f.fee for f in fills), D(0))
    assert closed.realized_pnl < 0


async def test_closed_and_reopened_same_side_between_two_looks(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (stop,) = rig.stops(BTC)
    await rig.clock.advance(1)
    rig.hand.close(BTC)
    rig.hand.open(BTC, LONG, D("0.3"))

    await rig.guard.reconcile_now()

    closed = await rig.rows("position_closed")
    assert len(closed) == 1 and closed[0]["qty"] == "0.5"
    assert [r["generation"] for r in await rig.rows("position_adopted")] == [1, 2]
    assert_one_stop_sized(rig, BTC)
    assert rig.guard.supervisors[BTC].known.generation == 2  # type: ignore[union-attr]
    (saved,) = await PositionRepo(rig.db).load(ACCOUNT)
    assert saved.generation == 2 and saved.qty == D("0.3")
    # our old stop rested all along: the new generation adopted it and amended it to size,
    # so the position was never without one
    assert rig.stops(BTC)[0].order_id == stop.order_id
    assert (await rig.kinds())[-5:] == ["position_closed", "position_adopted", "stop_adopted",
                                        "stop_intent", "stop_amended"]


async def test_flipped_by_hand_cancels_the_old_sides_stop(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (old,) = rig.stops(BTC)
    rig.exchange.market_order(symbol=BTC, side=OrderSide.SELL, qty=D("0.8"), reduce_only=False,
                              client_id=None)
    await rig.guard.reconcile_now()

    assert rig.exchange.orders[old.order_id].status is OrderStatus.CANCELLED
    assert_one_stop_sized(rig, BTC)
    assert rig.stops(BTC)[0].side is OrderSide.BUY


async def test_a_position_that_came_and_went_between_stream_events_leaves_no_supervisor(
        rig_factory: RigFactory) -> None:
    """Open-and-close seen only on the stream: no supervisor may stay behind, or it would block
    the zombie clean-up of that symbol for ever."""
    rig = await rig_factory(streaming=True)
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        await asyncio.sleep(0)
        rig.hand.open(SOL, LONG, D("10"))
        stop = rig.hand.place_stop(SOL, D(140))
        rig.hand.close(SOL)
        await eventually(lambda: not any(t.get_name().endswith(f"ensure {SOL}")
                                         for t in asyncio.all_tasks()))
        await asyncio.sleep(0.01)
        assert SOL not in rig.guard.supervisors
        await rig.guard.reconcile_now()
        await rig.clock.advance(31)
        await rig.guard.reconcile_now()
        assert rig.exchange.orders[stop.order_id].status is OrderStatus.CANCELLED
    finally:
        await rig.guard.stop()
        run.cancel()


# --- idempotency and recovery ----------------------------------------------------------------
async def test_lost_response_after_placement_is_found_by_client_id(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory(faults=FaultPlan(lost_response=1.0))
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    await rig.guard.reconcile_now()

    (stop,) = rig.stops(BTC)
    assert stop.client_id == cid(BTC, 1, 0)
    assert len([o for o in rig.exchange.orders.values() if is_ours(o.client_id)]) == 1
    assert rig.venue.calls_by_method["place_stop"] == 1
    assert rig.venue.calls_by_method["fetch_order"] == 1
    placed = await rig.rows("stop_placed")
    assert len(placed) == 1 and placed[0]["order_id"] == stop.order_id


async def test_retry_after_unknown_outcome_meets_a_duplicate_client_id(
        spy_rig: SpyRigFactory) -> None:
    """The first attempt executed but its response was lost and the lookup did not see it yet;
    the retry carries the same client id, the venue refuses the duplicate, the lookup finds it."""
    rig, spy = await spy_rig()
    inner = spy.inner
    state = {"placed": 0, "lookups": 0}

    async def lossy_place(request):  # type: ignore[no-untyped-def]
        spy.log.append(("place_stop", request.client_id))
        order = await inner.place_stop(request)
        state["placed"] += 1
        if state["placed"] == 1:
            raise OutcomeUnknown("read timeout")
        return order

    async def slow_lookup(symbol: str, client_id: str):  # type: ignore[no-untyped-def]
        state["lookups"] += 1
        if state["lookups"] == 1:
            return None  # not visible yet
        return await inner.find_order(symbol, client_id)

    spy.place_stop = lossy_place  # type: ignore[method-assign]
    spy.find_order = slow_lookup  # type: ignore[method-assign]
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()

    assert [c for m, c in spy.log if m == "place_stop"] == [cid(BTC, 1, 0)] * 2
    (stop,) = rig.stops(BTC)
    assert stop.client_id == cid(BTC, 1, 0)
    assert len([o for o in rig.exchange.orders.values() if is_ours(o.client_id)]) == 1
    assert len(await rig.rows("stop_placed")) == 1 and len(await rig.rows("stop_intent")) == 1


async def test_transient_errors_are_retried_with_backoff_and_jitter(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    spy.fail_first("place_stop", 2, lambda: Transient("502 bad gateway"))
    rig.hand.open(BTC, LONG, D("0.5"))
    clock = rig.clock
    assert isinstance(clock, RecordingClock)
    await drive(clock, rig.guard.reconcile_now(), step=0.01)
    assert len(rig.stops(BTC)) == 1 and spy.commands() == ["place_stop"] * 3
    # Two back-offs between the three attempts, each a full jitter of 0.2 s then 0.4 s.
    first, second = clock.sleeps
    assert 0 <= first <= 0.2 and 0 <= second <= 0.4 and first != second


async def test_retry_transient_backs_off_exponentially_with_full_jitter() -> None:
    clock = ManualClock()
    waits: list[float] = []
    original = clock.sleep

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await original(seconds)

    clock.sleep = recording_sleep  # type: ignore[method-assign]
    calls = {"n": 0}

    async def always_down() -> int:
        calls["n"] += 1
        raise Transient("down")

    task = asyncio.ensure_future(retry_transient(always_down, clock, attempts=4, base_delay=0.2,
                                                 max_delay=0.5, rng=random.Random(3)))
    while not task.done():
        await clock.advance(0.05)
    with pytest.raises(Transient):
        task.result()
    assert calls["n"] == 4 and len(waits) == 3
    assert 0 <= waits[0] <= 0.2 and 0 <= waits[1] <= 0.4 and 0 <= waits[2] <= 0.5
    assert len(set(waits)) == 3  # jittered

    async def operator() -> int:
        calls["n"] += 1
        raise OperatorError("invalid api key")

    calls["n"] = 0
    with pytest.raises(OperatorError):
        await retry_transient(operator, clock)
    assert calls["n"] == 1  # never retried


async def test_operator_error_halts_the_account_and_stops_all_commands(
        rig_factory: RigFactory, spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()

    async def bad_keys(method: str, arg: object) -> None:
        if method == "place_stop":
            raise OperatorError("API-key has no futures trading permission")

    while_halted: list[str] = []

    async def bad_keys_and_watch(method: str, arg: object) -> None:
        if rig.guard.halted and method not in ("snapshot", "find_order"):
            while_halted.append(method)
        await bad_keys(method, arg)

    spy.before = bad_keys_and_watch
    rig.hand.open(BTC, LONG, D("0.5"))
    rig.hand.open(ETH, SHORT, D("1"))
    rig.hand.open(XRP, LONG, D("100"))
    rig.hand.place_stop(XRP, D("0.5"))
    rig.hand.place_stop(XRP, D("0.51"))  # a duplicate the guard would cancel if it could
    await rig.guard.reconcile_now()

    assert rig.guard.halted and "permission" in rig.guard.halted
    halted = [e for e in rig.events if isinstance(e, ev.AccountHalted)]
    assert len(halted) == 1 and halted[0].severity is ev.Severity.CRITICAL
    assert await StateRepo(rig.db).get("halt", ACCOUNT) == rig.guard.halted
    commands = len(spy.commands())
    assert spy.commands().count("place_stop") <= 2  # BTC's and ETH's were in flight together
    assert while_halted == []

    rig.hand.open(SOL, LONG, D("10"))  # opened during the HALT: adopted and watched, not touched
    for _ in range(2):
        await rig.guard.reconcile_now()
        await rig.clock.advance(60)
        await rig.guard.check_sla()
    assert len(spy.commands()) == commands and while_halted == []  # snapshots only
    assert rig.stops(SOL) == [] and rig.stops(BTC) == []
    breached = {e.symbol for e in rig.events if isinstance(e, ev.SlaBreached)}
    assert breached == {BTC, ETH, SOL}  # still loud about every unprotected position

    # HALT survives a restart.
    again = await rig_factory(exchange=rig.exchange)
    assert again.guard.halted == rig.guard.halted


async def test_sla_breach_raises_a_critical_alert_once(rig_factory: RigFactory) -> None:
    rig = await rig_factory(faults=FaultPlan(reject=1.0))
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    assert "stop_rejected" in await rig.kinds() and rig.stops(BTC) == []

    await rig.clock.advance(4.9)
    await rig.guard.check_sla()
    assert not [e for e in rig.events if isinstance(e, ev.SlaBreached)]
    await rig.clock.advance(0.2)
    await rig.guard.check_sla()
    await rig.clock.advance(5)
    await rig.guard.check_sla()
    (breach,) = [e for e in rig.events if isinstance(e, ev.SlaBreached)]
    assert breach.severity is ev.Severity.CRITICAL and breach.unprotected_seconds == D("5.1")
    assert (await rig.rows("sla_breached"))[0]["symbol"] == BTC
    assert rig.metrics.registry.get_sample_value(
        "vigil_positions_unprotected", {"account": ACCOUNT}) == 1

    rig.venue.faults = FaultPlan()
    for _ in range(40):  # the venue heals: the retry comes when the back-off ends
        if rig.stops(BTC):
            break
        await rig.clock.advance(1)
        await rig.guard.reconcile_now()
    placed = (await rig.rows("stop_placed"))[0]
    assert D(placed["time_to_protect"]) >= D("10.1")
    assert rig.guard.supervisors[BTC].known.sla_alerted is False  # type: ignore[union-attr]


async def test_sla_watchdog_runs_inside_the_guard(rig_factory: RigFactory) -> None:
    rig = await rig_factory(faults=FaultPlan(reject=1.0))
    rig.hand.open(BTC, LONG, D("0.5"))
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: "stop_rejected" in [e.kind for e in rig.events])
        for _ in range(30):
            await rig.clock.advance(0.25)
            await asyncio.sleep(0.001)
        await eventually(lambda: any(isinstance(e, ev.SlaBreached) for e in rig.events))
    finally:
        await rig.guard.stop()
        run.cancel()


async def test_time_to_protect_is_kept_in_the_event_the_metric_and_the_repo(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.clock.advance(3)
    await rig.guard.reconcile_now()

    (placed,) = [e for e in rig.events if isinstance(e, ev.StopPlaced)]
    assert placed.time_to_protect == D("3.0")
    assert (await rig.rows("stop_placed"))[0]["time_to_protect"] == "3.0"
    assert rig.ttp_count() == 1
    assert rig.metrics.registry.get_sample_value(
        "vigil_time_to_protect_seconds_sum", {"account": ACCOUNT}) == 3.0
    (saved,) = await PositionRepo(rig.db).load(ACCOUNT)
    assert saved.last_time_to_protect == D("3.0")

    # Our stop cancelled by hand: protected again, and that fix is measured too.
    rig.hand.cancel(rig.stops(BTC)[0].order_id)
    await rig.guard.reconcile_now()
    await rig.clock.advance(2)
    await rig.guard.reconcile_now()
    assert rig.ttp_count() == 2


async def test_restart_resumes_from_the_repo_without_a_second_stop(
        rig_factory: RigFactory) -> None:
    first = await rig_factory(amend_in_place=False)
    first.hand.open(BTC, LONG, D("0.5"))
    first.hand.open(ETH, SHORT, D("1"))
    await first.guard.reconcile_now()
    stops = {o.order_id for o in first.exchange.open_orders()}

    second = await rig_factory(exchange=first.exchange, spy=True, amend_in_place=False)
    assert set(second.guard.supervisors) == {BTC, ETH}
    report = await second.guard.reconcile_now()

    assert report.events == () and report.unprotected_before == ()
    assert {o.order_id for o in second.exchange.open_orders()} == stops
    spy = second.port
    assert isinstance(spy, SpyVenue) and spy.commands() == []
    assert (await second.journal.verify()).ok

    # and it carries on where the first left: the next stop gets the next client id
    second.hand.open(BTC, LONG, D("0.1"))
    await second.guard.reconcile_now()
    assert rig_stop_cids(second, BTC) == [cid(BTC, 1, 1)]


async def test_restart_after_a_crash_between_placement_and_saving(
        rig_factory: RigFactory) -> None:
    """The stop reached the venue but the repo never learnt its id: the new guard must find it
    by our client id instead of placing a second one."""
    first = await rig_factory()
    first.hand.open(BTC, LONG, D("0.5"))
    await first.guard.reconcile_now()
    await first.db.conn.execute(
        "UPDATE positions SET stop_order_id = NULL, stop_client_id = NULL, stop_price = NULL,"
        " stop_qty = NULL, stop_seq = 0, state = 'unprotected'")
    await first.db.conn.commit()
    first.hand.place_stop(BTC, D(64000))  # and someone added a tighter stop by hand meanwhile

    second = await rig_factory(exchange=first.exchange)
    await second.guard.reconcile_now()
    assert rig_stop_cids(second, BTC) == [cid(BTC, 1, 0)]
    assert [e.kind for e in second.events] == ["stop_adopted", "cancel_intent",
                                               "stop_cancelled"]


# --- streaming ---------------------------------------------------------------------------
async def test_streaming_protects_a_hand_opened_position_without_waiting_for_the_interval(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory(streaming=True, interval=10)
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        snapshots = rig.venue.calls_by_method["fetch_positions"]
        rig.hand.open(BTC, LONG, D("0.5"))
        await eventually(lambda: any(isinstance(e, ev.StopPlaced) for e in rig.events))
        assert len(rig.stops(BTC)) == 1
        assert rig.clock.monotonic() == 0  # no time passed: the interval never elapsed
        assert rig.venue.calls_by_method["fetch_positions"] == snapshots
        placed = next(e for e in rig.events if isinstance(e, ev.StopPlaced))
        assert placed.time_to_protect == D("0.0")

        rig.hand.open(BTC, LONG, D("0.2"))  # resized on the stream, too
        await eventually(lambda: [o.qty for o in rig.stops(BTC)] == [D("0.7")])
        rig.hand.cancel(rig.stops(BTC)[0].order_id)  # our stop cancelled by hand
        await eventually(lambda: len(rig.stops(BTC)) == 1)
        assert rig.clock.monotonic() == 0
    finally:
        await rig.guard.stop()
        run.cancel()


async def test_a_stale_snapshot_does_not_undo_what_the_stream_said(
        rig_factory: RigFactory) -> None:
    """REST lags the stream: a position the stream reported (and we protected) may be missing
    from the next snapshot. That is not a close: no PositionClosed, and the stop stays."""
    rig = await rig_factory(streaming=True, faults=FaultPlan(late_positions_seconds=3))
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        rig.hand.open(BTC, LONG, D("0.5"))
        await eventually(lambda: len(rig.stops(BTC)) == 1)
        await rig.clock.advance(1)
        await rig.guard.reconcile_now()  # the snapshot does not show the position yet
        await rig.clock.advance(1)
        await rig.guard.reconcile_now()
        assert "position_closed" not in await rig.kinds()
        assert len(rig.stops(BTC)) == 1 and BTC in rig.guard.supervisors
        await rig.clock.advance(2)
        report = await rig.guard.reconcile_now()  # now it does
        assert report.events == ()
        assert len(await rig.rows("position_adopted")) == 1
    finally:
        await rig.guard.stop()
        run.cancel()


# --- the view merge, unit level ------------------------------------------------------------
def _report(symbol: str = BTC, qty: str = "1") -> PositionReport:
    clock = ManualClock()
    return PositionReport(symbol, LONG, D(qty), D(100), D(100), D(0), clock.now(), clock.now())


def _snapshot(*positions: PositionReport) -> VenueSnapshot:
    return VenueSnapshot(positions=positions, orders=(), taken_at=ManualClock().now())


def test_view_keeps_what_changed_after_the_snapshot_started() -> None:
    view = AccountView()
    view.apply_snapshot(_snapshot(_report(qty="1")), view.mark())
    marker = view.mark()
    view.set_position(BTC, _report(qty="2"))  # the stream, while the snapshot was in flight
    view.apply_snapshot(_snapshot(_report(qty="1")), marker)
    assert view.position(BTC).qty == D(2)  # type: ignore[union-attr]
    view.apply_snapshot(_snapshot(_report(qty="3")), view.mark())
    assert view.position(BTC).qty == D(3)  # type: ignore[union-attr]


def test_view_tombstones_survive_an_older_snapshot() -> None:
    view = AccountView()
    view.apply_snapshot(_snapshot(_report()), view.mark())
    marker = view.mark()
    view.set_position(BTC, None)
    view.apply_snapshot(_snapshot(_report()), marker)
    assert view.position(BTC) is None
    view.apply_snapshot(_snapshot(), view.mark())
    assert view.positions() == {}


def test_view_does_not_take_a_lagging_snapshot_for_a_close_until_the_grace_is_over() -> None:
    clock = ManualClock()
    view = AccountView(absence_grace=10)
    view.set_position(BTC, _report(), streamed_at=clock.now())
    view.apply_snapshot(_snapshot(), view.mark(), clock.now())
    assert view.position(BTC) is not None  # REST has not caught up yet
    later = clock.now() + timedelta(seconds=9)
    view.apply_snapshot(_snapshot(), view.mark(), later)
    assert view.position(BTC) is not None
    much_later = clock.now() + timedelta(seconds=10)
    view.apply_snapshot(_snapshot(), view.mark(), much_later)
    assert view.position(BTC) is None  # the stream never said it closed, but REST insists
    # without the stream's word, a snapshot's silence is a close at once
    view.apply_snapshot(_snapshot(_report(ETH)), view.mark(), much_later)
    view.apply_snapshot(_snapshot(), view.mark(), much_later)
    assert view.position(ETH) is None


def test_view_never_brings_back_an_order_it_knows_is_gone() -> None:
    view = AccountView()
    resting = order("5")
    view.set_order(resting)
    view.drop_order("5")  # we cancelled it
    view.set_order(resting)  # the stream's (late) report of its placement
    assert view.orders() == []
    view.apply_snapshot(VenueSnapshot((), (resting,), ManualClock().now()), view.mark())
    assert view.orders() == [resting]  # a snapshot taken after everything still decides


async def test_a_close_clamped_by_the_venue_is_not_sent_twice(spy_rig: SpyRigFactory) -> None:
    """Streaming off, the view is older than the venue: the position shrank by hand after the
    snapshot. The reduce-only close fills less than asked: that means flat, not 'some left'."""
    rig, spy = await spy_rig()

    async def hand_closes_part_first(method: str, arg: object) -> None:
        if method == "market_order" and rig.exchange.positions[BTC].qty == D("0.5"):
            rig.hand.close(BTC, D("0.3"))

    spy.before = hand_closes_part_first
    rig.hand.open(BTC, LONG, D("0.5"))
    rig.exchange.set_mark(BTC, D(63000))  # crossed: the guard closes
    await rig.guard.reconcile_now()
    await rig.guard.reconcile_now()

    assert BTC not in rig.exchange.positions
    assert spy.commands() == ["market_order"]
    assert "stop_rejected" not in await rig.kinds()
    assert (await rig.kinds())[-1] == "position_closed"


# --- failures that must not spread -------------------------------------------------------
async def test_a_failing_zombie_cancel_does_not_hold_up_protection(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig(policy=default_policy(zombie_grace_seconds=0))

    async def refuse_cancels(method: str, arg: object) -> None:
        if method == "cancel_order":
            raise Rejected(RejectReason.OTHER, "system busy")

    spy.before = refuse_cancels
    rig.hand.open(SOL, LONG, D("10"))
    zombie = rig.hand.place_stop(SOL, D(140))
    rig.hand.close(SOL)
    rig.hand.open(BTC, LONG, D("0.5"))

    await rig.guard.reconcile_now()

    assert len(rig.stops(BTC)) == 1  # protected in the same cycle
    assert rig.exchange.orders[zombie.order_id].is_resting
    failure = (await rig.rows("venue_failure"))[0]
    assert zombie.order_id in failure["operation"]
    spy.before = None
    await rig.guard.reconcile_now()
    assert not rig.exchange.orders[zombie.order_id].is_resting


async def test_one_rejection_costs_one_cycle_not_the_sla(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig(interval=1)
    refusals = {"left": 1}

    async def refuse_once(method: str, arg: object) -> None:
        if method == "place_stop" and refusals["left"]:
            refusals["left"] -= 1
            raise Rejected(RejectReason.OTHER, "try again")

    spy.before = refuse_once
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    assert rig.stops(BTC) == [] and "stop_rejected" in await rig.kinds()
    await rig.clock.advance(1)
    await rig.guard.reconcile_now()
    assert len(rig.stops(BTC)) == 1
    assert rig.stops(BTC)[0].client_id == cid(BTC, 1, 1)  # the refused id is used up
    assert (await rig.rows("stop_placed"))[0]["time_to_protect"] == "1.0"


async def test_repeated_rejections_back_off_exponentially(rig_factory: RigFactory) -> None:
    rig = await rig_factory(faults=FaultPlan(reject=1.0), interval=1)
    rig.hand.open(BTC, LONG, D("0.5"))
    attempts = []
    for _ in range(40):
        await rig.guard.reconcile_now()
        attempts.append(rig.venue.calls_by_method.get("place_stop", 0))
        await rig.clock.advance(1)
    # 0.5, 1, 2, 4, 8, 16 s pauses: far fewer than one attempt per cycle
    assert attempts[-1] <= 8
    assert attempts[0] == 1 and attempts[1] == 2


# --- storage under many supervisors at once ------------------------------------------------
async def test_generation_counter_is_safe_next_to_other_commits(rig_factory: RigFactory) -> None:
    """Supervisors adopt concurrently on one SQLite connection: the counter's INSERT ...
    RETURNING must not be left in progress while another coroutine commits."""
    rig = await rig_factory()
    state = StateRepo(rig.db)

    async def committer() -> None:
        for _ in range(200):
            await rig.db.conn.execute(
                "INSERT OR REPLACE INTO state VALUES ('bench', 'x', '1', 't')")
            await rig.db.conn.commit()

    results = await asyncio.gather(committer(),
                                   *(state.incr("generation", f"k{i % 5}") for i in range(60)))
    assert sorted(r for r in results if r is not None) == sorted(
        n for _ in range(5) for n in range(1, 13))


async def test_the_reconcile_loop_survives_an_unexpected_error(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig(interval=1)
    broken = {"left": 1}

    async def explode(method: str, arg: object) -> None:
        if method == "snapshot" and broken["left"]:
            broken["left"] -= 1
            raise RuntimeError("disk I/O error")

    spy.before = explode
    rig.hand.open(BTC, LONG, D("0.5"))
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_error is not None)
        await rig.clock.advance(1)
        await eventually(lambda: len(rig.stops(BTC)) == 1)
    finally:
        await rig.guard.stop()
        run.cancel()
