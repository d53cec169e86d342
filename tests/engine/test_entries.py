"""Entries on the simulated exchange, real SQLite journal: the stop rests with (or right after)
the first fill, or the entry is rolled back and the venue shows it flat."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from engine.domain import events as ev
from engine.domain.reports import OrderKind
from engine.domain.values import PositionSide
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
from engine.errors import OutcomeUnknown, Rejected, RejectReason
from tests.engine.conftest import ACCOUNT, BTC, Rig, SpyRigFactory, StopWatch, drive


def service(rig: Rig, *, hold: str | None = None, **limits: object) -> EntryService:
    return EntryService({ACCOUNT: rig.guard}, limits=RiskLimits(**limits),  # type: ignore[arg-type]
                        state=rig.guard.state, bus=rig.guard.bus, clock=rig.clock,
                        hold_of=lambda account: hold)


def long_500(key: str = "k1", stop: str = "2", kind: PriceKind = PriceKind.PERCENT,
             side: PositionSide = PositionSide.LONG) -> EntryRequest:
    return EntryRequest(ACCOUNT, "BTCUSDT", side, Amount(SizeKind.NOTIONAL, D(500)),
                        PriceSpec(kind, D(stop)), key, EntrySource.TELEGRAM, by="42")


def entry_orders(rig: Rig) -> list[object]:
    return [o for o in rig.exchange.orders.values()
            if o.kind is OrderKind.MARKET and not o.reduce_only and o.client_id]


async def test_stop_placed_at_first_fill_sized_to_what_filled(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    result = await drive(rig.clock, service(rig).open(long_500()))
    assert result.status is EntryStatus.PROTECTED
    assert result.filled_qty == D("0.007")  # $500 at 65,000 on the 0.001 lot, floored
    stops = rig.stops(BTC)
    assert len(stops) == 1 and stops[0].qty == D("0.007")
    assert stops[0].trigger_price == D("63700.0")  # 2 % under the mark
    assert spy.commands() == ["market_order", "place_stop"]
    # the supervisor adopted the position and this very stop: it guards it from here on
    known = rig.guard.supervisors[BTC].known
    assert known is not None and known.stop is not None
    assert known.stop.order_id == stops[0].order_id
    # naked only between the fill and the stop: no venue latency here, only the journal's
    # commit of the stop's intent (the driven clock steps 0.05 s while SQLite writes)
    assert result.time_to_protect is not None and result.time_to_protect <= D("0.1")
    kinds = await rig.kinds()
    assert kinds.index("entry_intent") < kinds.index("entry_filled") < kinds.index(
        "stop_intent") < kinds.index("entry_protected")


async def test_attached_stop_rests_with_the_fill_never_naked(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig(attached_stop=True)
    watch = StopWatch.attach(rig.exchange, rig.clock)
    result = await drive(rig.clock, service(rig).open(long_500()))
    watch.drain()
    assert result.status is EntryStatus.PROTECTED and result.time_to_protect == 0
    assert spy.commands() == ["market_order"]  # the stop rode on the entry order
    assert [o.trigger_price for o in rig.stops(BTC)] == [D("63700.0")]
    assert watch.gaps == []  # the stop rests from before the position shows
    assert rig.guard.supervisors[BTC].protected


async def test_attached_stop_through_the_mark_refuses_the_whole_order(
        spy_rig: SpyRigFactory) -> None:
    rig, _ = await spy_rig(attached_stop=True)
    # a short with its stop below the mark: the gates see it first
    result = await drive(rig.clock, service(rig).open(
        long_500(stop="60000", kind=PriceKind.PRICE, side=PositionSide.SHORT)))
    assert result.status is EntryStatus.REFUSED and result.refusal is Refusal.STOP_WRONG_SIDE
    assert rig.exchange.positions == {} and entry_orders(rig) == []


async def test_same_key_returns_the_earlier_result_and_sends_nothing(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    entries = service(rig)
    first = await drive(rig.clock, entries.open(long_500()))
    again = await drive(rig.clock, entries.open(long_500()))
    assert again.replayed and again.status is first.status and again.filled_qty == D("0.007")
    other = await drive(rig.clock, entries.open(long_500(stop="3")))
    assert other.status is EntryStatus.REFUSED and other.refusal is Refusal.DUPLICATE
    assert len(entry_orders(rig)) == 1 and spy.commands() == ["market_order", "place_stop"]


async def test_refused_on_hold_sends_nothing(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    result = await drive(rig.clock, service(rig, hold="by admin").open(long_500()))
    assert result.status is EntryStatus.REFUSED and result.refusal is Refusal.HOLD
    assert spy.commands() == [] and "entry_refused" in await rig.kinds()


# --- rollback --------------------------------------------------------------------------------
async def rolled_back_story(rig: Rig) -> list[str]:
    rows = await rig.rows("entry_intent", "entry_filled", "stop_intent", "close_intent",
                          "entry_rollback_step", "entry_rolled_back", "cancel_intent")
    return [r["kind"] + (f":{r['step']}" if "step" in r else "") for r in rows]


async def assert_flat_once(rig: Rig) -> None:
    assert rig.exchange.positions == {}
    assert rig.exchange.open_orders() == []
    assert len([e for e in rig.events if isinstance(e, ev.EntryRolledBack)]) == 1
    assert not [e for e in rig.events if isinstance(e, ev.EntryRollbackFailed)]


async def test_stop_rejected_rolls_back_to_verified_flat(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()

    async def refuse(method: str, arg: object) -> None:
        if method == "place_stop":
            raise Rejected(RejectReason.INVALID_ORDER, "price out of band")
    spy.before = refuse
    result = await drive(rig.clock, service(rig).open(long_500()))
    assert result.status is EntryStatus.ROLLED_BACK and "price out of band" in result.detail
    await assert_flat_once(rig)
    rolled = next(e for e in rig.events if isinstance(e, ev.EntryRolledBack))
    assert rolled.qty == D("0.007") and rolled.pnl is not None and rolled.pnl < 0  # fees
    assert await rolled_back_story(rig) == [
        "entry_intent", "entry_filled", "stop_intent", "entry_rollback_step:start",
        "close_intent", "entry_rollback_step:close_sent", "entry_rollback_step:flat_verified",
        "entry_rolled_back"]


async def test_stop_that_would_trigger_rolls_back(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()

    async def crash_price(method: str, arg: object) -> None:
        if method == "place_stop":
            rig.exchange.set_mark(BTC, D(63000))  # through the stop before it lands
    spy.before = crash_price
    result = await drive(rig.clock, service(rig).open(long_500()))
    assert result.status is EntryStatus.ROLLED_BACK
    assert "would_trigger_immediately" in result.detail
    await assert_flat_once(rig)


async def test_stop_timeout_not_found_rolls_back_and_cancels_a_late_stop(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    calls = {"n": 0}

    async def time_out(method: str, arg: object) -> None:
        if method == "place_stop":
            calls["n"] += 1
            raise OutcomeUnknown("timeout")
    spy.before = time_out
    result = await drive(rig.clock, service(rig).open(long_500()))
    assert result.status is EntryStatus.ROLLED_BACK and "not confirmed" in result.detail
    await assert_flat_once(rig)
    assert calls["n"] >= 3  # tried, looked up, tried again, within the budget


async def test_close_fails_twice_then_flat(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    closes = {"n": 0}

    async def faults(method: str, arg: object) -> None:
        if method == "place_stop":
            raise Rejected(RejectReason.INVALID_ORDER, "no")
        if method == "market_order" and getattr(arg, "reduce_only", False):
            closes["n"] += 1
            if closes["n"] <= 2:
                raise Rejected(RejectReason.OTHER, "system busy")
    spy.before = faults
    result = await drive(rig.clock, service(rig).open(long_500()))
    assert result.status is EntryStatus.ROLLED_BACK
    await assert_flat_once(rig)
    story = await rolled_back_story(rig)
    assert story.count("entry_rollback_step:close_failed") == 2
    assert story[-2:] == ["entry_rollback_step:flat_verified", "entry_rolled_back"]
    assert rig.guard.halted is None


async def test_close_keeps_failing_halts_and_stays_loud(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()

    async def faults(method: str, arg: object) -> None:
        if method == "place_stop":
            raise Rejected(RejectReason.INVALID_ORDER, "no")
        if method == "market_order" and getattr(arg, "reduce_only", False):
            raise Rejected(RejectReason.OTHER, "system busy")
    spy.before = faults
    result = await drive(rig.clock, service(rig).open(long_500()))
    assert result.status is EntryStatus.ROLLBACK_FAILED
    assert rig.guard.halted and "rollback" in rig.guard.halted
    assert len([e for e in rig.events if isinstance(e, ev.EntryRollbackFailed)]) == 1
    assert not [e for e in rig.events if isinstance(e, ev.EntryRolledBack)]
    # the supervisor knows the naked position: the SLA watchdog keeps the alert loud
    await rig.clock.advance(10)
    await rig.guard.check_sla()
    assert [e for e in rig.events if isinstance(e, ev.SlaBreached)]


async def test_restart_after_the_entry_was_sent_resumes_to_protected(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()

    class Crash(BaseException):
        pass

    async def crash(method: str, arg: object) -> None:
        if method == "place_stop":
            raise Crash
    spy.before = crash
    with pytest.raises(Crash):
        await drive(rig.clock, service(rig).open(long_500()))
    assert rig.exchange.positions and rig.stops(BTC) == []
    again, spy2 = await spy_rig(exchange=rig.exchange)  # same DB file, same exchange
    entries = service(again)
    resumed = await drive(again.clock, entries.resume())
    assert [r.status for r in resumed] == [EntryStatus.PROTECTED]
    assert [o.trigger_price for o in again.stops(BTC)] == [D("63700.0")]
    assert "market_order" not in spy2.commands()  # never a second entry
    replay = await drive(again.clock, entries.open(long_500()))
    assert replay.replayed and replay.status is EntryStatus.PROTECTED
    assert len(entry_orders(again)) == 1


async def test_lost_entry_response_is_looked_up_never_sent_again(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()

    async def lose_answer(method: str, arg: object) -> None:
        if method == "market_order" and not getattr(arg, "reduce_only", True):
            rig.exchange.entry_order(symbol=arg.symbol, side=arg.side, qty=arg.qty,  # type: ignore[attr-defined]
                                     client_id=arg.client_id, stop_loss=None)  # type: ignore[attr-defined]
            raise OutcomeUnknown("timeout after executing")
    spy.before = lose_answer
    result = await drive(rig.clock, service(rig).open(long_500()))
    assert result.status is EntryStatus.PROTECTED
    assert len(entry_orders(rig)) == 1
    assert [m for m, _ in spy.log].count("market_order") == 1
    assert "find_order" in [m for m, _ in spy.log]


async def test_more_fills_after_protection_resize_the_stop(spy_rig: SpyRigFactory) -> None:
    rig, _ = await spy_rig()
    result = await drive(rig.clock, service(rig).open(long_500()))
    assert result.status is EntryStatus.PROTECTED
    rig.hand.open(BTC, PositionSide.LONG, D("0.003"))  # a late fill of the same position
    await drive(rig.clock, rig.guard.reconcile_now())
    (stop,) = rig.stops(BTC)
    assert stop.qty == D("0.010") and stop.trigger_price == D("63700.0")
