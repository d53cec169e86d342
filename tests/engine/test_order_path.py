"""Issue 8: one path for every order change. The supervisor, the owner of zombies and a person's
/cancel_all all change orders through the account's OrderGateway, each holding the symbol's writer
lock across its check and its venue call, so none acts on a picture another writer is changing.

Each race is driven at every await point the writers have (journal append, venue call, after the
call); the position must end with exactly one stop, sized to it, that its supervisor knows."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.control import ControlService
from engine.domain import events as ev
from engine.domain.reports import OrderKind, OrderReport
from engine.domain.values import OrderSide, PositionSide
from engine.protection.orders import AccountHalted, OrderGateway
from storage.times import to_text
from tests.engine.conftest import (
    ACCOUNT,
    BTC,
    ETH,
    MemoryState,
    Rig,
    RigFactory,
    SpyRigFactory,
    StopWatch,
    default_policy,
    eventually,
)

D = Decimal
LONG = PositionSide.LONG


async def settle(rig: Rig) -> None:
    """Until no supervisor work is queued or running (stream-driven wakes included)."""
    await eventually(lambda: not any(" ensure " in t.get_name() or t.get_name().endswith(
        tuple(f"ensure {s}" for s in (BTC, ETH))) for t in asyncio.all_tasks()))
    await asyncio.sleep(0.01)


def assert_one_known_stop(rig: Rig, symbol: str) -> None:
    position = rig.exchange.positions[symbol]
    stops = rig.stops(symbol)
    assert len(stops) == 1, stops
    (stop,) = stops
    assert stop.is_stop_for(position.side) and stop.qty == position.qty
    sup = rig.guard.supervisors[symbol]
    assert sup.known is not None and sup.known.stop is not None
    assert sup.known.stop.order_id == stop.order_id, "the supervisor believes in another stop"


def flat_stop(rig: Rig, symbol: str, trigger: Decimal, qty: Decimal) -> OrderReport:
    """A reduce-only sell stop left on a flat symbol (a long's stop whose position is gone)."""
    return rig.exchange.place_trigger(symbol=symbol, side=OrderSide.SELL, qty=qty,
                                      trigger_price=trigger, kind=OrderKind.STOP_LOSS,
                                      client_id=None)


@pytest.mark.parametrize("moment", ["before_sweep", "at_intent", "in_venue_call",
                                    "after_cancel"])
async def test_zombie_cancel_racing_a_position_opening_leaves_exactly_one_stop(
        spy_rig: SpyRigFactory, moment: str) -> None:
    rig, spy = await spy_rig(streaming=True, policy=default_policy(zombie_grace_seconds=0))
    zombie = flat_stop(rig, BTC, D(60000), D("0.5"))
    opened: list[bool] = []

    def open_position() -> None:
        if not opened:
            opened.append(True)
            rig.hand.open(BTC, LONG, D("0.5"))  # the stream tells the guard at once

    async def in_call(method: str, arg: object) -> None:
        if method == "cancel_order" and moment == "in_venue_call":
            open_position()
            await asyncio.sleep(0.005)  # the stream event and the supervisor's wake run now

    async def on_event(event: ev.Event) -> None:
        if moment == "at_intent" and isinstance(event, ev.CancelIntent):
            open_position()
            await asyncio.sleep(0.005)
        if moment == "after_cancel" and isinstance(event, ev.ZombieCancelled):
            open_position()

    spy.before = in_call
    rig.guard.bus.subscribe(on_event)
    run = asyncio.create_task(rig.guard.run())
    try:
        if moment == "before_sweep":
            open_position()
        await eventually(lambda: rig.guard.last_reconcile is not None and bool(opened))
        await settle(rig)
        await rig.guard.reconcile_now()  # the next regular look finds nothing left to do
        await settle(rig)
    finally:
        await rig.guard.stop()
        run.cancel()
    assert_one_known_stop(rig, BTC)
    cancelled = zombie.order_id not in {o.order_id for o in rig.exchange.open_orders()}
    adopted = [e for e in rig.events if isinstance(e, ev.StopAdopted)]
    if cancelled:  # never adopted as protection and then cancelled under the position
        assert all(e.order_id != zombie.order_id for e in adopted)
    else:  # the position came first: the zombie owner left it to the supervisor
        assert moment == "before_sweep"


@pytest.mark.parametrize("moment", ["place_new", "cancel_old"])
async def test_cancel_all_racing_a_stop_replacement_keeps_one_stop_throughout(
        spy_rig: SpyRigFactory, moment: str) -> None:
    """The venue cannot amend: a resize places the new stop, then cancels the old one. A
    /cancel_all confirmed in the middle waits for the writer, never cancels a protective stop,
    and the position never has a moment without one."""
    rig, spy = await spy_rig(streaming=True, amend_in_place=False)
    control = ControlService({ACCOUNT: rig.guard}, venues_testnet={}, state=MemoryState(),
                             bus=rig.guard.bus, clock=rig.clock, mode="paper")
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (old,) = rig.stops(BTC)
    stray = flat_stop(rig, ETH, D(3000), D("1"))  # within the zombie grace: a cancel target
    await rig.guard.reconcile_now()
    targets = await control.cancel_targets()
    assert {t.order_id for t in targets} == {stray.order_id}
    # ...and a position opens on ETH before the confirmation: the target became its stop.
    rig.hand.open(ETH, LONG, D("1"))
    watch = StopWatch.attach(rig.exchange, rig.clock)
    racing: list[asyncio.Task[object]] = []
    writer = rig.guard.orders.writer(BTC)

    async def before(method: str, arg: object) -> None:
        wanted = "place_stop" if moment == "place_new" else "cancel_order"
        if method == wanted and not racing and getattr(arg, "symbol", None) == BTC:
            assert writer.locked()
            racing.append(asyncio.create_task(control.cancel(targets, "trader")))
            await asyncio.sleep(0.005)  # the confirmation runs as far as it can now

    spy.before = before
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        rig.hand.open(BTC, LONG, D("0.2"))  # resize: new stop first, then the old one goes
        await eventually(lambda: bool(racing) and racing[0].done())
        await settle(rig)
    finally:
        await rig.guard.stop()
        run.cancel()
    watch.drain()
    (outcome,) = racing[0].result()  # type: ignore[misc]
    assert (outcome.cancelled, outcome.detail) == (False, "protects")
    assert stray.order_id in {o.order_id for o in rig.exchange.open_orders()}
    assert old.order_id not in {o.order_id for o in rig.exchange.open_orders()}
    assert_one_known_stop(rig, BTC)
    assert_one_known_stop(rig, ETH)
    assert rig.stops(BTC)[0].qty == D("0.7")
    assert [s for s, _ in watch.gaps if s == BTC] == []


async def test_the_gateway_refuses_a_change_made_outside_the_symbols_writer(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    stop = flat_stop(rig, BTC, D(60000), D("0.5"))
    gateway: OrderGateway = rig.guard.orders
    with pytest.raises(RuntimeError, match="outside its writer"):
        await gateway.cancel(stop, ev.CancelReason.ZOMBIE, rig.guard.bus.publish)
    assert await rig.kinds() == []  # nothing journaled, nothing sent
    assert stop.order_id in {o.order_id for o in rig.exchange.open_orders()}


async def test_the_gateway_sends_nothing_on_halt(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    stop = flat_stop(rig, BTC, D(60000), D("0.5"))
    await rig.guard.halt("test")
    async with rig.guard.orders.writer(BTC):
        with pytest.raises(AccountHalted):
            await rig.guard.orders.cancel(stop, ev.CancelReason.ZOMBIE, rig.guard.bus.publish)
    assert await rig.kinds() == ["account_halted"]
    assert stop.order_id in {o.order_id for o in rig.exchange.open_orders()}
    # HALT's one exception is a limit entry's own rest: a stop can never pass for one
    async with rig.guard.orders.writer(BTC):
        with pytest.raises(ValueError, match="not a limit entry of ours"):
            await rig.guard.orders.cancel_entry_rest(stop, ev.CancelReason.ENTRY_HALT,
                                                     rig.guard.bus.publish)
    assert await rig.kinds() == ["account_halted"]
    assert stop.order_id in {o.order_id for o in rig.exchange.open_orders()}


async def test_events_are_stamped_by_the_engines_clock(rig_factory: RigFactory) -> None:
    """Issue 8: event times come from the injected clock, not the machine's."""
    rig = await rig_factory()
    await rig.clock.advance(3600)
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    assert rig.events and {e.at for e in rig.events} == {rig.clock.now()}
    assert {row.at for row in await rig.journal.rows()} == {to_text(rig.clock.now())}
