"""Trailing stops end to end: ticks from the simulated exchange -> exit book -> the position's
supervisor -> amend (or new-before-cancel) on the venue, with the trail state in SQLite."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.domain import events as ev
from engine.domain.values import PositionSide
from engine.errors import Rejected, RejectReason
from engine.exits.book import AmendLimits
from engine.exits.plan import Breakeven, ExitPlan, Trailing
from storage.exits import ExitRepo
from tests.engine.conftest import StopWatch
from tests.exits.conftest import BTC, TrailRig, trail_rig

D = Decimal
LONG = PositionSide.LONG
TRAIL = ExitPlan(trailing=Trailing(D(1), D("0.5")))


async def opened(rig: TrailRig, qty: str = "0.01") -> None:
    rig.hand.open(BTC, LONG, D(qty))
    await rig.guard.reconcile_now()
    await rig.clock.advance(1.0)  # the tick feed subscribes to the newly guarded symbol
    await rig.settle()


async def mark(rig: TrailRig, price: str, *, wait: float = 1.0) -> None:
    await rig.clock.advance(wait)
    rig.exchange.set_mark(BTC, D(price))
    await rig.settle()


@pytest.mark.parametrize("amend_in_place", [True, False])
async def test_stop_follows_the_best_mark_and_never_back(tmp_path: Path,
                                                         amend_in_place: bool) -> None:
    rig = await trail_rig(tmp_path, TRAIL, amend_in_place=amend_in_place)
    try:
        await opened(rig)
        watch = StopWatch.attach(rig.exchange, rig.clock)
        entry = rig.exchange.positions[BTC].entry_price
        [stop] = rig.stops()
        assert stop.trigger_price == D("63712.8")  # 2 % below 65013 (entry with slippage)
        await mark(rig, "65500")  # +0.75 %: not active yet
        assert rig.stops()[0].trigger_price == stop.trigger_price
        await mark(rig, "66000")  # +1.5 %: active, 0.5 % behind 66000
        [stop] = rig.stops()
        assert stop.trigger_price == D("65670.0")
        await mark(rig, "65800")  # worse: nothing moves
        assert rig.stops()[0].trigger_price == D("65670.0")
        await mark(rig, "67000")
        [stop] = rig.stops()
        assert stop.trigger_price == D("66665.0") and stop.qty == D("0.01")
        watch.drain()
        assert watch.gaps == []  # new-before-cancel: never a moment without a stop
        view = rig.guard.positions()[0].exit
        assert view is not None and view.activated and view.best_mark == D(67000)
        stored = await ExitRepo(rig.db).load("paper")
        assert stored[0].state is not None and stored[0].state.last_amend_price == D("66665.0")
        assert entry < D("66665.0")
        moved = [e for e in rig.events if isinstance(e, ev.StopAmended | ev.StopPlaced)]
        assert moved  # journaled like any other stop change
    finally:
        await rig.close()


async def test_breakeven_moves_the_stop_to_entry_plus_fees(tmp_path: Path) -> None:
    plan = ExitPlan(breakeven=Breakeven(at_percent=D(1), fee_percent=D("0.1"),
                                        buffer_percent=D("0.05")))
    rig = await trail_rig(tmp_path, plan)
    try:
        await opened(rig)
        entry = rig.exchange.positions[BTC].entry_price
        await mark(rig, "65700")  # +1.06 %
        [stop] = rig.stops()
        assert stop.trigger_price == D("65110.6")  # ceil(65013 * 1.0015) on the tick
        assert stop.trigger_price > entry
    finally:
        await rig.close()


async def test_snapshot_marks_carry_the_trail_without_a_tick_stream(tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, TRAIL, ticks=False)
    try:
        await opened(rig)
        rig.exchange.set_mark(BTC, D(66000))
        await rig.clock.advance(2)
        await rig.guard.reconcile_now()
        await rig.settle()
        assert rig.stops()[0].trigger_price == D("65670.0")
    finally:
        await rig.close()


async def test_restart_mid_trail_continues_from_the_stored_best_mark(tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, TRAIL)
    await opened(rig)
    await mark(rig, "66000")
    await mark(rig, "67000")
    assert rig.stops()[0].trigger_price == D("66665.0")
    exchange = rig.exchange
    await rig.close()
    # Down: the price dips (below the activation, above the stop); the stop rests meanwhile.
    exchange.set_mark(BTC, D("66700"))
    again = await trail_rig(tmp_path, TRAIL, exchange=exchange)
    try:
        state = again.book.states[BTC]
        assert state.activated and state.best_mark == D(67000)
        await again.guard.reconcile_now()
        await again.clock.advance(1.0)
        await again.settle()
        await mark(again, "66750")  # not a new best: never re-activated, never loosened
        assert again.stops()[0].trigger_price == D("66665.0")
        await mark(again, "67500")  # a new best: continues from the stored trail
        assert again.stops()[0].trigger_price == D("67162.5")
        assert len(again.stops()) == 1
    finally:
        await again.close()


@pytest.mark.parametrize("amend_in_place", [True, False])
async def test_hand_add_during_a_trailing_move_ends_with_one_sized_stop(
        tmp_path: Path, amend_in_place: bool) -> None:
    rig = await trail_rig(tmp_path, TRAIL, amend_in_place=amend_in_place)
    try:
        await opened(rig)
        # The person adds to the position while the trail's amend is on its way.
        if amend_in_place:
            rig.venue.before_amend.append(lambda: rig.hand.open(BTC, LONG, D("0.02")))
        else:
            original = rig.venue.place_stop

            async def place_after_add(request):  # type: ignore[no-untyped-def]
                rig.venue.place_stop = original  # type: ignore[method-assign]
                rig.hand.open(BTC, LONG, D("0.02"))
                return await original(request)
            rig.venue.place_stop = place_after_add  # type: ignore[method-assign]
        await mark(rig, "66000")
        await rig.guard.reconcile_now()  # the next look sees the new size
        await rig.settle()
        [stop] = rig.stops()
        assert rig.exchange.positions[BTC].qty == D("0.03")
        assert stop.qty == D("0.03") and stop.trigger_price == D("65670.0")
    finally:
        await rig.close()


async def test_a_move_held_back_by_the_interval_goes_when_it_ends_without_another_tick(
        tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, TRAIL, limits=AmendLimits(min_interval_seconds=5.0))
    try:
        await opened(rig)
        await mark(rig, "66000")  # activates: the first move goes at once
        assert rig.stops()[0].trigger_price == D("65670.0")
        await mark(rig, "67000", wait=0.5)  # inside the 5 s interval: held back
        assert rig.stops()[0].trigger_price == D("65670.0")
        assert BTC in rig.book.held
        await rig.clock.advance(3.0)  # still inside, and no tick comes at all
        await rig.settle()
        assert rig.stops()[0].trigger_price == D("65670.0")
        await rig.clock.advance(2.0)  # the interval ends: the timer sends the move
        await rig.settle()
        [stop] = rig.stops()
        assert stop.trigger_price == D("66665.0")
        assert BTC not in rig.book.held and not rig.guard._move_timers
        sent = [at for _m, price, _seen, at in rig.venue.sent
                if price in (D("65670.0"), D("66665.0"))]
        assert len(sent) == 2 and sent[1] - sent[0] >= 5.0  # the interval held
    finally:
        await rig.close()


async def test_failed_moves_alert_loudly_once_per_position_until_one_succeeds(
        tmp_path: Path) -> None:
    rig = await trail_rig(tmp_path, TRAIL)
    refusing = True
    original = rig.venue.amend_stop

    async def amend(order, trigger_price, qty):  # type: ignore[no-untyped-def]
        if refusing:
            raise Rejected(RejectReason.INVALID_ORDER, "price filter")
        return await original(order, trigger_price, qty)
    rig.venue.amend_stop = amend  # type: ignore[method-assign]
    try:
        await opened(rig)
        first = rig.stops()[0].trigger_price
        for price in ("66000", "66500", "67000", "67500"):  # each wants a move; each refused
            await mark(rig, price, wait=3.0)
        assert rig.stops()[0].trigger_price == first  # the old stop rests: still protected
        failed = [e for e in rig.events if isinstance(e, ev.StopMoveFailed)]
        assert len(failed) == 1 and failed[0].severity is ev.Severity.CRITICAL
        assert failed[0].old_price == first and failed[0].reason == "invalid_order"
        assert not any(isinstance(e, ev.StopMoved) for e in rig.events)
        assert not any(isinstance(e, ev.StopRejected | ev.StopCannotRest)
                       for e in rig.events)  # those say "not protected": not so here
        refusing = False
        await mark(rig, "68000", wait=10.0)  # past the back-off
        await rig.clock.advance(1.5)  # a move held back by the interval goes on its timer
        await rig.settle()
        assert rig.stops()[0].trigger_price == D("67660.0")
        moved = [e for e in rig.events if isinstance(e, ev.StopMoved)]
        assert moved and all(e.severity is ev.Severity.INFO for e in moved)  # silent alerts
        refusing = True
        await mark(rig, "69000", wait=3.0)  # a new streak after a success: loud again
        assert len([e for e in rig.events if isinstance(e, ev.StopMoveFailed)]) == 2
    finally:
        await rig.close()


async def test_a_replacement_through_the_venues_fresher_mark_never_closes_the_position(
        tmp_path: Path) -> None:
    """No amend on the venue: the trail's new stop is refused as 'would trigger' (the venue's
    mark is fresher than ours). The old stop keeps protecting; nothing is closed or cancelled
    (before, the crossed-stop policy closed the position and then cancelled the old stop)."""
    rig = await trail_rig(tmp_path, TRAIL, amend_in_place=False)
    original = rig.venue.place_stop
    refusing = True

    async def place(request):  # type: ignore[no-untyped-def]
        if refusing and rig.stops():  # a replacement, not the first stop
            raise Rejected(RejectReason.WOULD_TRIGGER_IMMEDIATELY, "would trigger")
        return await original(request)
    rig.venue.place_stop = place  # type: ignore[method-assign]
    try:
        await opened(rig)
        [first] = rig.stops()
        await mark(rig, "66000")
        assert BTC in rig.exchange.positions and rig.stops() == [first]
        kinds = {type(e) for e in rig.events}
        assert not kinds & {ev.CloseIntent, ev.StopCrossed, ev.StopCancelled, ev.StopMoveFailed}
        refusing = False
        await mark(rig, "66100", wait=5.0)
        [stop] = rig.stops()
        assert stop.trigger_price > first.trigger_price  # the trail goes on afterwards
    finally:
        await rig.close()
