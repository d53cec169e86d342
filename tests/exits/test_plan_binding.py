"""An exit plan belongs to the position it was made for, not to the symbol: a position closed
while Vigil was stopped takes its plan (trail, best mark, take-profit) with it, and the next
position on the symbol starts from the defaults; a plan for the position still open survives a
restart. Real guard, SQLite file and simulated exchange, restarted on the same database."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from bot import render
from bot.i18n import build_i18n
from engine.domain import events as ev
from engine.domain.reports import OrderKind, OrderReport
from engine.domain.values import PositionSide
from engine.entries.model import PriceKind, PriceSpec
from engine.exits.plan import ExitPlan, Trailing
from engine.exits.requests import TakeProfitStatus
from storage.exits import ExitRepo
from storage.repositories import PositionRepo
from tests.exits.conftest import BTC, TrailRig, trail_rig
from tests.exits.test_trailing import mark, opened

D = Decimal
LONG = PositionSide.LONG


def tps(rig: TrailRig) -> list[OrderReport]:
    return [o for o in rig.exchange.open_orders(BTC) if o.kind is OrderKind.TAKE_PROFIT]


async def trailing_with_tp(rig: TrailRig) -> None:
    """/trail and /tp 70000 on the open long, then the trail moves the stop to 66,665."""
    await rig.guard.set_exit_plan(BTC, lambda p: replace(p, trailing=Trailing(D(1), D("0.5"))))
    tp = await rig.guard.set_take_profit(BTC, PriceSpec(PriceKind.PRICE, D(70000)))
    assert tp.status is TakeProfitStatus.SET
    await mark(rig, "66000")
    await mark(rig, "67000")
    assert [s.trigger_price for s in rig.stops()] == [D("66665.0")]
    assert [t.trigger_price for t in tps(rig)] == [D(70000)]


async def restarted(rig: TrailRig, tmp_path: Path) -> TrailRig:
    again = await trail_rig(tmp_path, ExitPlan(), exchange=rig.exchange)
    await again.look()
    await again.clock.advance(1.0)
    await again.settle()
    return again


def dropped(rig: TrailRig) -> list[ev.ExitPlanDropped]:
    return [e for e in rig.events if isinstance(e, ev.ExitPlanDropped)]


async def test_a_position_reopened_while_down_on_a_venue_without_open_times_starts_afresh(
        tmp_path: Path) -> None:
    """ccxt reports no open time, so the re-opened long looks like the old one to reconcile.
    Before the fix it inherited the old trail's floor (66,665, far above the new long's mark:
    a stop through the market) and the old take-profit."""
    rig = await trail_rig(tmp_path, ExitPlan())
    rig.exchange.opened_at_known = False
    await opened(rig)
    await trailing_with_tp(rig)
    await rig.close()
    # Down: the stop fires on a dip; later a new long is opened by hand at 60,000.
    rig.exchange.set_mark(BTC, D(66600))
    assert BTC not in rig.exchange.positions
    rig.exchange.set_mark(BTC, D(60000))
    rig.hand.open(BTC, LONG, D("0.02"))
    entry = rig.exchange.positions[BTC].entry_price

    again = await restarted(rig, tmp_path)
    try:
        assert again.exchange.positions[BTC].qty == D("0.02")  # not closed as "crossed"
        [stop] = again.stops()
        assert stop.trigger_price < entry and stop.trigger_price < D(60000)  # 2 % under it
        assert stop.trigger_price > entry * D("0.97")
        assert tps(again) == []  # the old take-profit is not the new long's
        [event] = dropped(again)
        assert (event.why, event.take_profit, event.trailing) == (
            "position_replaced", D(70000), True)
        assert event.entry_price is not None and event.entry_price != entry
        i18n = build_i18n("en")
        with i18n.context(), i18n.use_locale("en"):
            alert = render.event(event) or ""
            # a trail state under the settings' default plan goes silently (journal only)
            assert render.event(replace(event, take_profit=None, trailing=False)) is None
        assert "exit plan (trailing, take-profit 70000) of an earlier position" in alert
        rows = await ExitRepo(again.db).load("paper")
        assert all(r.plan is None or r.plan.take_profit is None for r in rows)
        view = again.guard.positions()[0].exit
        assert view is not None and view.plan.trailing is None and view.best_mark is None
        [row] = await again.journal.rows(kinds=("exit_plan_dropped",))
        assert row.payload["why"] == "position_replaced"
    finally:
        await again.close()


async def test_a_plan_left_without_its_journaled_position_is_dropped_at_start_up(
        tmp_path: Path) -> None:
    """The position's journal row went (closed) but its plan row stayed (a crash between the
    two): at start-up the plan goes, and the next position gets no take-profit or trail."""
    rig = await trail_rig(tmp_path, ExitPlan())
    await opened(rig)
    await trailing_with_tp(rig)
    await PositionRepo(rig.db).delete("paper", BTC)
    await rig.close()
    rig.hand.close(BTC)
    for order in rig.exchange.open_orders(BTC):
        rig.hand.cancel(order.order_id)
    rig.exchange.set_mark(BTC, D(60000))
    rig.hand.open(BTC, LONG, D("0.02"))

    again = await trail_rig(tmp_path, ExitPlan(), exchange=rig.exchange)
    try:
        assert again.book.plans == {} and again.book.states == {}  # gone at load
        await again.look()
        assert tps(again) == [] and len(again.stops()) == 1
        assert again.stops()[0].trigger_price < D(60000)
        [event] = dropped(again)
        assert (event.why, event.take_profit, event.trailing) == ("position_gone", D(70000), True)
    finally:
        await again.close()


async def test_the_plan_of_the_position_still_open_survives_a_restart(tmp_path: Path) -> None:
    """Added to by hand while Vigil runs (another entry price, our stop resized and resting),
    then restarted: the same position, so its trail and take-profit stay."""
    rig = await trail_rig(tmp_path, ExitPlan())
    rig.exchange.opened_at_known = False
    await opened(rig)
    await trailing_with_tp(rig)
    rig.hand.open(BTC, LONG, D("0.01"))  # an add: the entry price moves up
    await rig.look()
    assert [s.qty for s in rig.stops()] == [D("0.02")]
    await rig.close()

    again = await restarted(rig, tmp_path)
    try:
        assert dropped(again) == []
        view = again.guard.positions()[0].exit
        assert view is not None and view.plan.trailing is not None
        assert view.plan.take_profit == D(70000) and view.best_mark == D(67000)
        assert [t.trigger_price for t in tps(again)] == [D(70000)]
        assert [s.trigger_price for s in again.stops()] == [D("66665.0")]
    finally:
        await again.close()


async def test_on_a_venue_with_open_times_an_add_and_a_cancelled_stop_keep_the_plan(
        tmp_path: Path) -> None:
    """The venue says when the position opened: added to (another entry price) and our stop
    cancelled by hand while Vigil was down, it is still the same position, so its trail and
    take-profit stay and the stop is placed again from the stored trail."""
    rig = await trail_rig(tmp_path, ExitPlan())
    await opened(rig)
    await trailing_with_tp(rig)
    await rig.close()
    rig.hand.open(BTC, LONG, D("0.01"))  # down: an add, and our stop cancelled by hand
    for stop in rig.stops():
        rig.hand.cancel(stop.order_id)

    again = await restarted(rig, tmp_path)
    try:
        assert dropped(again) == []
        view = again.guard.positions()[0].exit
        assert view is not None and view.plan.trailing is not None
        assert view.plan.take_profit == D(70000)
        assert [s.trigger_price for s in again.stops()] == [D("66665.0")]
    finally:
        await again.close()
