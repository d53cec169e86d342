"""The exit plan's take-profit: placed, resized and cancelled by the position's supervisor on the
simulated exchange; never counted as protection; a hit closes the position and leaves nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from engine.domain import events as ev
from engine.domain.ids import OrderPurpose, has_purpose
from engine.domain.reports import OrderKind, OrderReport
from engine.domain.values import OrderSide, PositionSide
from engine.entries.gates import RiskLimits
from engine.entries.model import (
    Amount,
    EntryRequest,
    EntrySource,
    EntryStatus,
    PriceKind,
    PriceSpec,
    Refusal,
    SizeKind,
)
from engine.entries.service import EntryService
from engine.exits.plan import ExitPlan
from engine.exits.requests import TakeProfitStatus
from storage.exits import ExitRepo
from tests.engine.conftest import drive
from tests.exits.conftest import BTC, TrailRig, trail_rig
from tests.exits.test_trailing import opened

D = Decimal
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


def tps(rig: TrailRig) -> list[OrderReport]:
    return [o for o in rig.exchange.open_orders(BTC) if o.kind is OrderKind.TAKE_PROFIT]


def price(value: str) -> PriceSpec:
    return PriceSpec(PriceKind.PRICE, D(value))


async def test_take_profit_rests_reduce_only_sized_to_the_position(tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, ExitPlan())
    try:
        await opened(rig)
        result = await rig.guard.set_take_profit(BTC, price("67000"))
        await rig.settle()
        assert result.status is TakeProfitStatus.SET and result.price == D(67000)
        [tp] = tps(rig)
        assert (tp.side, tp.qty, tp.trigger_price, tp.reduce_only) == (
            OrderSide.SELL, D("0.01"), D(67000), True)
        assert has_purpose(tp.client_id, OrderPurpose.TAKE_PROFIT)
        assert len(rig.stops()) == 1  # the stop is untouched: one stop, one TP
        placed = [e for e in rig.events if isinstance(e, ev.TakeProfitPlaced)]
        assert [e.order_id for e in placed] == [tp.order_id]
        intents = [e for e in rig.events if isinstance(e, ev.TakeProfitIntent)]
        assert [e.client_id for e in intents] == [tp.client_id]  # journaled before the call
        # Stored with the plan: a restart keeps it.
        [row] = await ExitRepo(rig.db).load("paper")
        assert row.plan is not None and row.plan.take_profit == D(67000)
        # Another pass changes nothing: ours is recognised, not a zombie, not a second stop.
        await rig.look()
        assert [o.order_id for o in tps(rig)] == [tp.order_id] and len(rig.stops()) == 1
        view = rig.guard.positions()[0]
        assert view.stop_price == rig.stops()[0].trigger_price  # the stop, never the TP
    finally:
        await rig.close()


async def test_take_profit_follows_the_size_and_goes_when_turned_off(tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, ExitPlan())
    try:
        await opened(rig)
        await rig.guard.set_take_profit(BTC, PriceSpec(PriceKind.PERCENT, D(3)))
        await rig.settle()
        [first] = tps(rig)
        assert first.trigger_price == D("66950.0")  # 3 % above the mark 65000, on the tick
        rig.hand.open(BTC, LONG, D("0.02"))  # a hand add
        await rig.look()
        [tp] = tps(rig)
        assert tp.qty == D("0.03") and tp.trigger_price == first.trigger_price
        assert tp.client_id != first.client_id  # a new id: the venue never sees one twice
        [stop] = rig.stops()
        assert stop.qty == D("0.03")
        off = await rig.guard.set_take_profit(BTC, None)
        await rig.settle()
        assert off.status is TakeProfitStatus.OFF and tps(rig) == []
        assert len(rig.stops()) == 1
    finally:
        await rig.close()


async def test_take_profit_at_or_past_the_mark_is_refused_and_changes_nothing(
        tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, ExitPlan())
    try:
        await opened(rig)
        result = await rig.guard.set_take_profit(BTC, price("64000"))  # long: below the mark
        assert result.status is TakeProfitStatus.THROUGH_MARK and result.mark == D(65000)
        await rig.settle()
        assert tps(rig) == [] and rig.book.plan_for(BTC).take_profit is None
        assert not any(isinstance(e, ev.TakeProfitIntent) for e in rig.events)
    finally:
        await rig.close()


async def test_take_profit_hit_closes_the_position_alerts_with_pnl_and_leaves_no_order(
        tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, ExitPlan())
    try:
        await opened(rig)
        await rig.guard.set_take_profit(BTC, price("66000"))
        await rig.settle()
        entry = rig.exchange.positions[BTC].entry_price
        rig.exchange.set_mark(BTC, D(66100))  # the TP triggers on the mark, fills reduce-only
        await rig.settle()
        await rig.look()
        assert BTC not in rig.exchange.positions
        assert rig.exchange.open_orders(BTC) == []  # the stop went once flat was confirmed
        [hit] = [e for e in rig.events if isinstance(e, ev.PositionClosed)]
        assert hit.reason is ev.CloseReason.TAKE_PROFIT
        assert hit.side is LONG and hit.qty == D("0.01") and hit.exit_price is not None
        assert hit.realized_pnl is not None and hit.realized_pnl > 0
        assert hit.realized_pnl == (hit.exit_price - entry) * D("0.01")
        assert rig.guard.positions() == []
    finally:
        await rig.close()


async def test_a_stop_out_is_not_reported_as_a_take_profit(tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, ExitPlan())
    try:
        await opened(rig)
        await rig.guard.set_take_profit(BTC, price("67000"))
        await rig.settle()
        rig.exchange.set_mark(BTC, D(63000))  # through the stop
        await rig.settle()
        await rig.look()
        assert BTC not in rig.exchange.positions and rig.exchange.open_orders(BTC) == []
        [closed] = [e for e in rig.events if isinstance(e, ev.PositionClosed)]
        assert closed.reason is ev.CloseReason.ON_VENUE  # a stop-out, not a TP hit
    finally:
        await rig.close()


async def test_a_short_take_profit_is_a_buy_below_the_mark(tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, ExitPlan())
    try:
        rig.hand.open(BTC, SHORT, D("0.02"))
        await rig.look()
        await rig.guard.set_take_profit(BTC, price("63000"))
        await rig.settle()
        [tp] = tps(rig)
        assert (tp.side, tp.qty, tp.trigger_price) == (OrderSide.BUY, D("0.02"), D(63000))
        refused = await rig.guard.set_take_profit(BTC, price("66000"))
        assert refused.status is TakeProfitStatus.THROUGH_MARK
        assert [o.order_id for o in tps(rig)] == [tp.order_id]
    finally:
        await rig.close()


def entry(tp: PriceSpec, key: str = "k-tp") -> EntryRequest:
    return EntryRequest("paper", "BTCUSDT", LONG, Amount(SizeKind.NOTIONAL, D(650)),
                        PriceSpec(PriceKind.PERCENT, D(2)), key, EntrySource.TELEGRAM,
                        take_profit=tp, by="42")


def entries(rig: TrailRig) -> EntryService:
    return EntryService({"paper": rig.guard}, limits=RiskLimits(), state=rig.guard.state,
                        bus=rig.guard.bus, clock=rig.clock, hold_of=lambda account: None)


async def test_an_entrys_tp_goes_into_the_positions_exit_plan(tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, ExitPlan())
    try:
        result = await drive(rig.clock, entries(rig).open(entry(PriceSpec(PriceKind.PERCENT,
                                                                          D(4)))))
        await rig.settle()
        assert result.status is EntryStatus.PROTECTED
        [tp] = tps(rig)
        assert tp.trigger_price == D("67600.0") and tp.qty == result.filled_qty
        assert rig.book.plan_for(BTC).take_profit == D("67600.0")
        assert len(rig.stops()) == 1
    finally:
        await rig.close()


async def test_an_entrys_tp_past_the_mark_is_refused_before_anything_is_sent(
        tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, ExitPlan())
    try:
        result = await drive(rig.clock, entries(rig).open(entry(price("60000"))))
        await rig.settle()
        assert result.status is EntryStatus.REFUSED
        assert result.refusal is Refusal.TAKE_PROFIT_WRONG_SIDE and "above" in result.detail
        assert rig.exchange.positions == {} and rig.stops() == [] and tps(rig) == []
    finally:
        await rig.close()


async def test_a_confirmed_looser_stop_ends_the_trail_but_keeps_the_take_profit(
        tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, ExitPlan())
    try:
        await opened(rig)
        await rig.guard.set_take_profit(BTC, price("67000"))
        await rig.settle()
        looser = await rig.guard.move_stop(BTC, price("62000"), confirmed=True)
        await rig.settle()
        assert looser.new == D(62000) and rig.stops()[0].trigger_price == D(62000)
        assert rig.book.plan_for(BTC).take_profit == D(67000)
        assert [o.trigger_price for o in tps(rig)] == [D(67000)]
    finally:
        await rig.close()
