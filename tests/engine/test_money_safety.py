"""Issue 15: ways a position could lose its stop or be closed twice. One regression test per
finding (the docstrings name it); each failed on the code before its fix."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.control import CloseStatus, ControlService
from engine.domain import events as ev
from engine.domain.position import GuardedPosition
from engine.domain.reports import MarketInfo, MarketOrderRequest, OrderReport, PositionReport
from engine.domain.values import PositionSide
from engine.errors import Rejected, RejectReason, Transient
from engine.protection.reconcile import PlaceStop, Resized, plan_position
from engine.sim.venue import SimVenue
from storage.repositories import PositionRepo
from tests.engine.conftest import (
    ACCOUNT,
    BTC,
    MemoryState,
    Rig,
    RigFactory,
    SpyRigFactory,
    SpyVenue,
    default_policy,
    drive,
    eventually,
)

D = Decimal
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


def control_of(rig: Rig) -> ControlService:
    return ControlService({ACCOUNT: rig.guard}, venues_testnet={}, state=MemoryState(),
                          bus=rig.guard.bus, clock=rig.clock, mode="paper")


async def test_stream_down_polls_within_the_sla(rig_factory: RigFactory) -> None:
    """Finding 1: with the stream down and default settings (interval 10 s, SLA 5 s) a position
    opened right after a snapshot waited ~10 s for its stop. Snapshots now come at least twice
    per SLA while the stream is down."""
    rig = await rig_factory(streaming=False, interval=10)
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        rig.hand.open(BTC, LONG, D("0.5"))  # just after the first snapshot
        await rig.clock.advance(1.7)
        await eventually(lambda: len(rig.stops(BTC)) == 1)
        assert rig.guard.poll_interval == 5 / 3
    finally:
        await rig.guard.stop()
        run.cancel()


async def test_old_refusals_do_not_slow_a_new_placement(spy_rig: SpyRigFactory) -> None:
    """Finding 2: refusals of earlier commands (here: amends) kept the back-off counter high,
    so a stop refused once much later waited 16-30 s. The counter starts over after a quiet
    period and after any command the venue took; a placement is retried within the SLA."""
    rig, spy = await spy_rig()
    refuse = {"amend_stop": 5, "place_stop": 0}

    async def refusing(method: str, arg: object) -> None:
        if refuse.get(method, 0) > 0:
            refuse[method] -= 1
            raise Rejected(RejectReason.OTHER, f"refused {method}")

    spy.before = refusing
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    rig.hand.open(BTC, LONG, D("0.1"))  # grows: the amend is refused, again and again
    for _ in range(6):
        await rig.guard.reconcile_now()
        await rig.clock.advance(20)
    await rig.clock.advance(120)  # quiet
    rig.hand.cancel(rig.stops(BTC)[0].order_id)  # the stop is gone; its replacement is refused once
    refuse["place_stop"] = 1
    await rig.guard.reconcile_now()
    assert rig.stops(BTC) == []
    started = rig.clock.monotonic()
    while not rig.stops(BTC):
        await rig.clock.advance(0.25)
        await rig.guard.reconcile_now()
    assert rig.clock.monotonic() - started <= rig.guard.policy.sla_seconds


async def test_a_close_on_a_halted_account_says_halted_not_flat(rig_factory: RigFactory) -> None:
    """Finding 3: a close on a HALTed account answered "already flat" while the position was
    open."""
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    control = control_of(rig)
    (target,) = control.close_targets("BTCUSDT")
    await rig.guard.halt("revoked key")

    (outcome,) = await control.close([target], "trader")

    assert outcome.status is CloseStatus.HALTED
    assert BTC in rig.exchange.positions


async def test_an_approved_close_never_closes_a_newer_position(rig_factory: RigFactory) -> None:
    """Finding 4: the long is stopped out, the trader re-enters long, and a Confirm tap within
    the TTL closed the new one. The target carries the position's generation."""
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    control = control_of(rig)
    (target,) = control.close_targets("BTCUSDT")
    assert target.generation == 1
    rig.hand.close(BTC)  # stopped out...
    await rig.guard.reconcile_now()
    rig.hand.open(BTC, LONG, D("0.5"))  # ...and a new long, same side, same size
    await rig.guard.reconcile_now()

    (outcome,) = await control.close([target], "trader")

    assert (outcome.status, outcome.detail) == (CloseStatus.CHANGED, "reopened")
    assert rig.exchange.positions[BTC].qty == D("0.5")


async def test_a_flip_journals_the_close_of_the_old_side(rig_factory: RigFactory) -> None:
    """Finding 7: long -> short between two looks: the close of the long was never journaled
    (a fresh snapshot showed *a* position), so no position_closed and no realized PnL."""
    rig = await rig_factory()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    rig.hand.open(BTC, SHORT, D("0.8"))  # through zero: short 0.3; the long's stop is useless
    await rig.guard.reconcile_now()

    closed = [e for e in rig.events if isinstance(e, ev.PositionClosed)]
    assert [(e.side, e.qty) for e in closed] == [(LONG, D("0.5"))]
    (stop,) = rig.stops(BTC)
    assert stop.is_stop_for(SHORT) and stop.qty == D("0.3")


async def test_each_event_is_journaled_before_its_state_is_saved(rig_factory: RigFactory
                                                                 ) -> None:
    """Finding 8: adopt, stop placed and close saved the position before journaling the event:
    a crash between the two lost the event. Every save now finds its event already journaled."""
    rig = await rig_factory()
    store = rig.guard.store
    assert isinstance(store, PositionRepo)
    seen: list[tuple[str, list[str]]] = []
    original_save, original_delete = store.save, store.delete

    async def save(position: object) -> None:
        seen.append(("save", await rig.kinds()))
        await original_save(position)  # type: ignore[arg-type]

    async def delete(account: str, symbol: str) -> None:
        seen.append(("delete", await rig.kinds()))
        await original_delete(account, symbol)

    store.save, store.delete = save, delete  # type: ignore[method-assign]
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    rig.hand.close(BTC)
    await rig.guard.reconcile_now()

    saves = [(op, kinds[-1]) for op, kinds in seen]
    assert ("save", "position_adopted") in saves
    assert ("save", "stop_placed") in saves
    assert ("delete", "position_closed") in saves


async def test_one_plan_never_acts_on_a_view_its_own_commands_changed(
        spy_rig: SpyRigFactory) -> None:
    """Finding 9: all actions of one plan ran across awaited venue calls, so later ones acted
    on a picture earlier ones had changed. The supervisor plans again after every venue
    command: here the hand closes the position while the duplicate stop is being cancelled
    (the stream says so at once), and the next action of the old plan (the resize of the kept
    stop) is not sent for a position that is gone."""
    rig, spy = await spy_rig(streaming=True, amend_in_place=True)
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (ours,) = rig.stops(BTC)
    rig.hand.place_stop(BTC, D(60000), D("0.5"))  # a duplicate...
    rig.hand.open(BTC, LONG, D("0.2"))  # ...and the position grows: cancel dup, resize ours

    async def close_during_cancel(method: str, arg: object) -> None:
        if method == "cancel_order" and BTC in rig.exchange.positions:
            rig.hand.close(BTC)
            await asyncio.sleep(0.005)  # the stream tells the guard before the cancel returns

    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        spy.before = close_during_cancel
        await rig.guard.reconcile_now()
        await eventually(lambda: BTC not in rig.guard.supervisors)
    finally:
        await rig.guard.stop()
        run.cancel()

    assert "amend_stop" not in spy.commands()
    assert BTC not in rig.exchange.positions and rig.stops(BTC) == []
    assert ours.order_id not in {o.order_id for o in rig.exchange.open_orders()}


class BinanceLikeVenue(SpyVenue):
    """The simulated exchange behind Binance USD-M's rules where they differ: a filled order's
    client id may be used again (unique among *open* orders only), a 5xx after execution comes
    back as a transient error, and a lookup by client id may miss an order still in
    processing."""

    def __init__(self, inner: SimVenue) -> None:
        super().__init__(inner)
        self.sent: list[str] = []

    async def market_order(self, request: MarketOrderRequest) -> OrderReport:
        self.sent.append(request.client_id)
        # Binance accepts a filled order's id again: model it with a fresh id per send.
        fresh = replace(request, client_id=f"{request.client_id}-{len(self.sent)}")
        await self.inner.market_order(fresh)
        raise Transient("502 Bad Gateway: execution status unknown")

    async def find_order(self, symbol: str, client_id: str) -> OrderReport | None:
        return None  # still being processed


async def test_a_close_is_never_sent_twice_after_an_unknown_outcome(
        rig_factory: RigFactory) -> None:
    """Finding 5: de-duplication relied on the venue refusing a reused client id, and a 5xx
    (mapped to a transient error) was resent with no lookup; on Binance the second send closes
    again. Now a failed send is outcome-unknown: looked up, and the position read, before any
    resend; a position that shrank by the requested size means the close ran."""
    rig = await rig_factory()
    binance = BinanceLikeVenue(rig.venue)
    rig.guard.venue = binance  # type: ignore[assignment]
    rig.guard.orders.venue = binance  # type: ignore[assignment]
    rig.guard.ctx.venue = binance  # type: ignore[assignment]
    rig.hand.open(BTC, LONG, D("1"))
    await rig.guard.reconcile_now()
    control = control_of(rig)
    (target,) = control.close_targets("BTCUSDT")

    (outcome,) = await drive(rig.clock, control.close([replace(target, qty=D("0.5"))], "t"))

    assert len(binance.sent) == 1, binance.sent
    assert rig.exchange.positions[BTC].qty == D("0.5")
    assert outcome.status is CloseStatus.SUBMITTED


async def test_the_rest_of_a_protective_close_gets_its_stop_at_once(
        spy_rig: SpyRigFactory) -> None:
    """Finding 11: a crossed stop closes the position; the hand added to it meanwhile, so the
    close left a remainder, which waited 15 s ("close pending") without a stop. A close known
    to have filled lets what is left get its stop at once (tightened next to the mark, as the
    wanted one is crossed); only a second close stays blocked."""
    rig, spy = await spy_rig(policy=default_policy())
    rig.hand.open(BTC, LONG, D("0.5"))
    rig.exchange.set_mark(BTC, D(60000))  # far below the 2 % stop: crossed, the policy closes

    async def hand_adds_first(method: str, arg: object) -> None:
        if method == "market_order" and rig.exchange.positions[BTC].qty == D("0.5"):
            rig.hand.open(BTC, LONG, D("0.2"))

    spy.before = hand_adds_first
    await rig.guard.reconcile_now()

    assert rig.exchange.positions[BTC].qty == D("0.2")
    (stop,) = rig.stops(BTC)
    assert stop.qty == D("0.2") and stop.trigger_price is not None
    assert stop.trigger_price < D(60000)
    assert [m for m in spy.commands() if m == "market_order"] == ["market_order"]
    assert rig.clock.monotonic() == 0  # no waiting out a "pending" close


def test_while_a_close_is_in_flight_its_remainder_gets_a_stop_never_a_second_close() -> None:
    """Finding 11, a venue that accepts a close before it fills (Bybit, Bitget): nothing races
    the close until its fill is seen; then what is left gets a stop (tightened next to the
    mark when the wanted one is crossed), never a second close."""
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    known = GuardedPosition(account=ACCOUNT, symbol=BTC, side=LONG, qty=D("0.7"),
                            entry_price=D(65000), generation=1, close_from_qty=D("0.7"),
                            close_pending_until=now + timedelta(seconds=15))
    market = MarketInfo(BTC, D("0.1"), D("0.001"), D("0.001"))

    def report(qty: str) -> PositionReport:
        return PositionReport(BTC, LONG, D(qty), D(65000), D(60000), D(0), None, now)

    assert plan_position(known, report("0.7"), [], market, default_policy(), now) == []
    actions = plan_position(known, report("0.2"), [], market, default_policy(), now)
    assert [type(a) for a in actions] == [Resized, PlaceStop]
    place = actions[-1]
    assert isinstance(place, PlaceStop) and place.qty == D("0.2")
    assert place.trigger_price < D(60000) and place.crossed_from is not None


async def test_a_re_entry_after_a_stop_out_is_protected_not_closed(
        rig_factory: RigFactory) -> None:
    """Finding 10: ccxt positions carry no open time, so when our stop fired and the trader
    re-entered the same side before Vigil looked, the new position inherited the old stop
    price (now crossed) and the default policy market-closed it. A fired stop now records the
    close; the re-entry is a new position priced from its own entry."""
    rig = await rig_factory(streaming=True)
    rig.exchange.opened_at_known = False  # as on ccxt: no open time in position reports
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        rig.hand.open(BTC, LONG, D("0.5"))
        await eventually(lambda: len(rig.stops(BTC)) == 1)
        (old,) = rig.stops(BTC)
        assert old.trigger_price is not None
        rig.exchange.set_mark(BTC, old.trigger_price - 100)  # stopped out...
        rig.hand.open(BTC, LONG, D("0.5"))  # ...and back in at once, below the old stop
        await eventually(lambda: len(rig.stops(BTC)) == 1
                         and rig.stops(BTC)[0].order_id != old.order_id)
        await eventually(lambda: not any(t.get_name().endswith(f"ensure {BTC}")
                                         for t in asyncio.all_tasks()))
    finally:
        await rig.guard.stop()
        run.cancel()
    assert rig.exchange.positions[BTC].qty == D("0.5")  # kept, not closed
    (new,) = rig.stops(BTC)
    assert new.trigger_price is not None and new.trigger_price < old.trigger_price - 100
    closed = [e for e in rig.events if isinstance(e, ev.PositionClosed)]
    assert len(closed) == 1 and not any(isinstance(e, ev.CloseIntent) for e in rig.events)


async def test_a_stop_the_venue_always_refuses_is_not_retried_forever(
        spy_rig: SpyRigFactory) -> None:
    """Issue 9: a stop that can never rest (here: too many conditional orders) is reported
    loudly after a few tries, stays on the SLA clock, and is tried again only after a long
    pause, or at once when the position changes."""
    rig, spy = await spy_rig()

    async def refuse(method: str, arg: object) -> None:
        if method == "place_stop":
            raise Rejected(RejectReason.TOO_MANY_STOPS, "110009 too many stop orders")

    spy.before = refuse
    rig.hand.open(BTC, LONG, D("0.5"))
    for _ in range(60):  # a minute of reconcile passes and SLA checks
        await rig.guard.reconcile_now()
        await rig.guard.check_sla()
        await rig.clock.advance(1)
    tries = spy.commands().count("place_stop")
    cannot = [e for e in rig.events if isinstance(e, ev.StopCannotRest)]
    assert tries == 4 and len(cannot) == 1 and cannot[0].attempts == 4
    assert any(isinstance(e, ev.SlaBreached) for e in rig.events)  # the SLA clock ran on

    rig.hand.open(BTC, LONG, D("0.1"))  # the position changes: tried again at once
    await rig.guard.reconcile_now()
    assert spy.commands().count("place_stop") == tries + 1
