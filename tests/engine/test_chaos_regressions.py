"""Deterministic scenarios for the chaos failures of issue 15 that were bugs in Vigil (the
randomized test, tests/engine/test_protection_chaos.py, found them; each is pinned here without
the dice). Real guard, real SQLite journal, SimExchange behind SimVenue; the venue's answers are
scripted through SpyVenue's hook."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest

from engine.clock import ManualClock
from engine.domain import events as ev
from engine.domain.ids import OrderPurpose, client_order_id
from engine.domain.reports import (
    MarketOrderRequest,
    OrderSide,
    OrderStatus,
    PositionReport,
    StreamStatus,
    VenueSnapshot,
)
from engine.domain.values import PositionSide
from engine.errors import OutcomeUnknown, Rejected, RejectReason, Transient
from engine.protection.view import AccountView, MarkedFetch
from engine.sim.venue import FaultPlan
from tests.engine.conftest import (
    ACCOUNT,
    BTC,
    ETH,
    SOL,
    Rig,
    SpyRigFactory,
    drive,
    eventually,
)

D = Decimal
LONG = PositionSide.LONG


def cid(symbol: str, generation: int, seq: int, purpose: OrderPurpose) -> str:
    return client_order_id(ACCOUNT, symbol, generation, purpose, seq)


async def test_a_fresh_snapshot_showing_flat_is_not_undone_by_the_older_view(
        spy_rig: SpyRigFactory) -> None:
    """Chaos rest-only-0ms-today seed 301 (and 200ms seeds 543, 575, 615): the long is flipped
    to a short and the short closed before the supervisor's own fresh snapshot. That snapshot
    shows the symbol flat, so the long's close is recorded, and nothing more: before the fix the
    next round re-planned on the reconcile's older picture, adopted the short that was already
    gone and put a stop on a flat symbol."""
    rig, spy = await spy_rig()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (long_stop,) = rig.stops(BTC)
    rig.exchange.market_order(symbol=BTC, side=OrderSide.SELL, qty=D("0.8"), reduce_only=False,
                              client_id=None)  # flipped: short 0.3
    snapshots = {"n": 0}

    async def close_before_the_second_look(method: str, arg: object) -> None:
        if method == "snapshot":
            snapshots["n"] += 1
            if snapshots["n"] == 2:  # the supervisor's own look, after the reconcile's
                rig.hand.close(BTC)

    spy.before = close_before_the_second_look
    await rig.guard.reconcile_now()

    assert snapshots["n"] == 2 and BTC not in rig.exchange.positions
    assert rig.exchange.orders[long_stop.order_id].status is OrderStatus.CANCELLED
    adopted = await rig.rows("position_adopted")
    assert [row["side"] for row in adopted] == ["long"]  # never the short that was gone
    closed = await rig.rows("position_closed")
    assert [row["side"] for row in closed] == ["long"]
    assert rig.stops(BTC) == [] and "stop_intent" not in (await rig.kinds())[-3:]
    assert BTC not in rig.guard.supervisors


def test_of_two_snapshots_the_one_begun_later_wins() -> None:
    """Each `mark()` is its own version: a supervisor's own snapshot that ends after the
    guard's but began before it does not outlive it (rest-only-200ms-harsh seed 456: a
    position read before a flip outlived a newer snapshot and was adopted after it was gone),
    and one begun after an older snapshot is never undone by it."""
    clock = ManualClock()
    held = PositionReport(SOL, LONG, D(1), D(100), D(100), D(0), None, clock.now())
    flat = VenueSnapshot(positions=(), orders=(), taken_at=clock.now())
    shows = VenueSnapshot(positions=(held,), orders=(), taken_at=clock.now())
    view = AccountView()
    view.apply_snapshot(shows, view.mark(), clock.now())
    earlier = view.mark()  # one look begins ...
    later = view.mark()  # ... and another after it; the earlier one ends last
    view.apply_snapshot(flat, later, clock.now())
    view.apply_snapshot(shows, earlier, clock.now())
    assert view.position(SOL) is None
    earlier, later = view.mark(), view.mark()
    view.apply_snapshot(shows, later, clock.now())
    view.apply_snapshot(flat, earlier, clock.now())
    assert view.position(SOL) == held


async def test_a_placement_whose_outcome_stays_unknown_is_retried_within_the_sla(
        spy_rig: SpyRigFactory) -> None:
    """Every try of the stop times out before the venue runs it (three sends, three lookups
    that find nothing): the gateway gives up with OutcomeUnknown. With the stream up the next
    reconcile pass is 10 s away and no stream event comes for a quiet position, so the
    supervisor must try again by itself, before the SLA runs out."""
    rig, spy = await spy_rig(streaming=True, interval=10)
    left = spy.fail_first("place_stop", 3, lambda: OutcomeUnknown("timeout (not executed)"))
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        first = rig.guard.last_reconcile
        await rig.clock.advance(2)  # past the first pass (the stream was not up yet)
        await eventually(lambda: rig.guard.last_reconcile != first)
        start = rig.clock.monotonic()
        rig.hand.open(BTC, LONG, D("0.5"))
        await eventually(lambda: left == [0]
                         and any(isinstance(e, ev.VenueFailure) for e in rig.events))
        assert rig.stops(BTC) == []
        sla = rig.guard.policy.sla_seconds
        while not rig.stops(BTC) and rig.clock.monotonic() - start < 2 * sla:
            await rig.clock.advance(0.25)
            await asyncio.sleep(0.005)  # SQLite's thread
        assert len(rig.stops(BTC)) == 1
        assert rig.clock.monotonic() - start < sla  # not at the 10 s pass
    finally:
        await rig.guard.stop()
        run.cancel()


async def test_a_close_of_the_side_that_flipped_away_never_shrinks_the_new_position(
        spy_rig: SpyRigFactory) -> None:
    """Chaos streaming-50ms-harsh seed 404: the supervisor sends the close of a short (a
    reduce-only buy) after the stream already shows the person's flip to a long, which REST does
    not show yet. The first send fails before it runs, the resend is refused as reduce-only
    (nothing short to reduce) and the gateway reports the close as run: it must not take that
    fill off the long. Before the fix the view showed long 0.10 where the venue held 0.11, which
    was then adopted, recorded closed while open, and adopted again."""
    rig, spy = await spy_rig(faults=FaultPlan(late_positions_seconds=1.5))
    rig.hand.open(BTC, LONG, D("0.11"))
    view, gateway = rig.guard.view, rig.guard.orders
    view.set_position(BTC, rig.exchange.position_report(BTC),
                      streamed_at=rig.clock.now())  # the stream's word; REST still lags
    spy.fail_first("market_order", 1, lambda: Transient("connection reset (not executed)"))
    request = MarketOrderRequest(BTC, OrderSide.BUY, D("0.01"), True,
                                 cid(BTC, 1, 0, OrderPurpose.CLOSE))

    async def close() -> object:
        async with gateway.writer(BTC):
            return await gateway.close(request, ev.CloseReason.STOP_CROSSED, "",
                                       rig.guard.bus.publish)

    with pytest.raises(Rejected) as refused:  # issue 13: refused, never reported as "ran"
        await drive(rig.clock, close())
    assert refused.value.reason is RejectReason.REDUCE_ONLY_REJECTED
    assert "now long" in refused.value.message
    assert spy.commands() == ["market_order", "market_order"]
    assert rig.exchange.positions[BTC].qty == D("0.11")
    assert view.position(BTC) is not None and view.position(BTC).qty == D("0.11")


async def test_a_refused_duplicate_cancel_does_not_leave_a_protected_position_unprotected(
        spy_rig: SpyRigFactory) -> None:
    """Chaos rest-only-200ms-harsh seed 735: a new short rests under two of the person's stops.
    The duplicate's cancel is refused; the kept stop must be adopted all the same (it came
    after the cancel in the plan), or the journal calls the position unprotected from its
    opening and the SLA watchdog alerts at 5 s although a stop rested all along."""
    rig, spy = await spy_rig(interval=1)
    rig.hand.open(ETH, PositionSide.SHORT, D("2"))
    rig.hand.place_stop(ETH, D(3300))
    rig.hand.place_stop(ETH, D(3400))
    spy.fail_first("cancel_order", 100, lambda: Rejected(RejectReason.OTHER, "try later"))

    await rig.guard.reconcile_now()

    kinds = await rig.kinds()
    assert kinds[:2] == ["position_adopted", "stop_adopted"] and "stop_rejected" in kinds
    assert "stop_missing" not in kinds and len(rig.stops(ETH)) == 2
    sup = rig.guard.supervisors[ETH]
    assert sup.protected
    assert sup.sla_breached(rig.clock.now() + timedelta(seconds=60)) is None


async def test_a_retried_snapshot_counts_as_begun_at_the_attempt_that_succeeded() -> None:
    """Chaos rest-only-50ms-harsh seed 401: the supervisor's snapshot failed three times and
    read the venue last, but was marked before its first try, so the guard's snapshot (begun in
    between, read earlier, before a flip) overruled it and a gone short was adopted."""
    clock = ManualClock()
    held = PositionReport(SOL, LONG, D(1), D(100), D(100), D(0), None, clock.now())
    attempts = {"n": 0}

    async def flat_after_a_failure() -> VenueSnapshot:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise Transient("connection reset")
        return VenueSnapshot(positions=(), orders=(), taken_at=clock.now())

    view = AccountView()
    view.apply_snapshot(VenueSnapshot(positions=(held,), orders=(), taken_at=clock.now()),
                        view.mark())
    fetch = MarkedFetch(view, flat_after_a_failure)
    with pytest.raises(Transient):
        await fetch()
    guards = view.mark()  # the guard's look begins between the two attempts, reads the long
    flat = await fetch()
    view.apply_snapshot(flat, fetch.marker, clock.now())
    view.apply_snapshot(VenueSnapshot(positions=(held,), orders=(), taken_at=clock.now()),
                        guards, clock.now())
    assert fetch.marker > guards and view.position(SOL) is None


async def test_a_snapshot_that_times_out_is_read_again(spy_rig: SpyRigFactory) -> None:
    """Chaos profiles (issue 13): the reconcile after a stream reconnect failed when its snapshot
    timed out, because a read's OutcomeUnknown (ccxt's RequestTimeout) was not retried like a
    reset connection. A timed-out read changed nothing: it is read again."""
    rig, spy = await spy_rig()
    rig.hand.open(BTC, LONG, D("0.5"))
    left = spy.fail_first("snapshot", 2, lambda: OutcomeUnknown("read timed out"))
    report = await drive(rig.clock, rig.guard.reconcile_now())
    assert left == [0]
    assert report.error is None
    assert len(rig.stops(BTC)) == 1


def test_after_a_stream_gap_a_snapshot_is_the_truth_for_what_the_stream_reported() -> None:
    """Issue 13 (streaming-200ms-clean-chaos-harsh seeds 13, 16, 116): the stream reported a
    position, then dropped, and the event that closed it was lost. The absence grace (REST lags
    the stream) must not keep that position through a snapshot begun after the gap, nor pass the
    stream's old word on to a snapshot's entry that a later snapshot then spares."""
    clock = ManualClock()
    held = PositionReport(SOL, LONG, D(1), D(100), D(100), D(0), None, clock.now())
    flat = VenueSnapshot(positions=(), orders=(), taken_at=clock.now())
    shows = VenueSnapshot(positions=(held,), orders=(), taken_at=clock.now())

    unbroken = AccountView(absence_grace=10)  # the rule the gap suspends: REST may lag
    unbroken.set_position(SOL, held, streamed_at=clock.now())
    unbroken.apply_snapshot(flat, unbroken.mark(), clock.now())
    assert unbroken.position(SOL) == held

    view = AccountView(absence_grace=10)
    view.set_position(SOL, held, streamed_at=clock.now())
    view.stream_gap()
    view.apply_snapshot(flat, view.mark(), clock.now())
    assert view.position(SOL) is None

    handed_on = AccountView(absence_grace=10)  # seed 16: a snapshot read it before it closed
    handed_on.set_position(SOL, held, streamed_at=clock.now())
    handed_on.stream_gap()
    handed_on.apply_snapshot(shows, handed_on.mark(), clock.now())
    assert handed_on.position(SOL) == held and handed_on.vouched(SOL)
    handed_on.apply_snapshot(flat, handed_on.mark(), clock.now())
    assert handed_on.position(SOL) is None


async def test_a_flip_reported_before_a_stream_drop_and_closed_in_it_is_not_adopted(
        spy_rig: SpyRigFactory) -> None:
    """Issue 13 (streaming-200ms-clean-chaos-harsh seed 13): the stream reports the person's
    flip of a protected long to a short, drops, and the short's close is lost with it. The
    reconcile's snapshot, begun after the drop, shows the symbol flat: the long's close is
    recorded and nothing more. Before the fix the short stayed in the view for the absence grace
    (10 s), was adopted, and got a stop on a flat symbol."""
    rig, _ = await spy_rig()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    assert len(rig.stops(BTC)) == 1
    rig.exchange.market_order(symbol=BTC, side=OrderSide.SELL, qty=D("0.8"), reduce_only=False,
                              client_id=None)  # flipped: short 0.3, as the stream says
    rig.guard.view.set_position(BTC, rig.exchange.position_report(BTC),
                                streamed_at=rig.clock.now())
    await rig.guard._on_stream_event(StreamStatus(False, "ws closed by venue"))
    rig.hand.close(BTC)  # its report is lost with the stream

    await rig.guard.reconcile_now()

    assert [row["side"] for row in await rig.rows("position_adopted")] == ["long"]
    assert [row["side"] for row in await rig.rows("position_closed")] == ["long"]
    assert rig.stops(BTC) == [] and BTC not in rig.guard.supervisors


async def test_a_supervisor_looks_again_before_adopting_what_the_stream_said_before_a_gap(
        spy_rig: SpyRigFactory) -> None:
    """Issue 13 (streaming-50ms-clean-chaos-harsh seed 116): a position reported by the stream
    just before it dropped, already closed on the venue (the close was lost), is in the view
    when a supervisor plans. It must not adopt it on that word: it reads a fresh snapshot first,
    which shows the symbol flat, and ends without a journal entry or a venue command."""
    rig, spy = await spy_rig()
    await _closed_while_the_stream_was_down(rig)

    events = await drive(rig.clock, rig.guard.supervisor(ETH).ensure())

    assert events == [] and spy.log == [("snapshot", None)] and spy.commands() == []
    assert rig.guard.view.position(ETH) is None and ETH not in rig.guard.supervisors
    assert await rig.rows("position_adopted") == []


async def test_a_supervisors_own_snapshot_that_times_out_is_read_again(
        spy_rig: SpyRigFactory) -> None:
    """The supervisor's fresh look is a read like the guard's: a timeout (OutcomeUnknown)
    changed nothing and is read again (engine/protection/view.read_snapshot, used by both),
    instead of failing the round with a VenueFailure and a retry later."""
    rig, spy = await spy_rig()
    await _closed_while_the_stream_was_down(rig)
    left = spy.fail_first("snapshot", 2, lambda: OutcomeUnknown("read timed out"))

    events = await drive(rig.clock, rig.guard.supervisor(ETH).ensure())

    assert left == [0] and [m for m, _ in spy.log] == ["snapshot"] * 3
    assert events == [] and not any(isinstance(e, ev.VenueFailure) for e in rig.events)
    assert rig.guard.view.position(ETH) is None and ETH not in rig.guard.supervisors


async def _closed_while_the_stream_was_down(rig: Rig) -> None:
    """The stream reported a short, then dropped; the short's close was lost with it."""
    rig.hand.open(ETH, PositionSide.SHORT, D("2"))
    streamed = rig.exchange.position_report(ETH)
    rig.hand.close(ETH)
    rig.guard.view.set_position(ETH, streamed, streamed_at=rig.clock.now())
    await rig.guard._on_stream_event(StreamStatus(False, "ws closed by venue"))
    assert not rig.guard.view.vouched(ETH)
