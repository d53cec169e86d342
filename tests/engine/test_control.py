"""ControlService closes: only what was approved, never twice while a close is in flight."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from engine.control import CloseStatus, CloseTarget, ControlService
from engine.domain.reports import MarketOrderRequest, OrderKind, OrderReport, OrderStatus
from engine.domain.values import PositionSide
from storage.repositories import StateRepo
from tests.engine.conftest import ACCOUNT, BTC, RigFactory

LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


def target(side: PositionSide = LONG, qty: str = "0.5") -> CloseTarget:
    return CloseTarget(ACCOUNT, BTC, side, D(qty), D(65000), D(0))


async def control_for(rig_factory: RigFactory):
    rig = await rig_factory()
    control = ControlService({ACCOUNT: rig.guard}, venues_testnet={}, state=StateRepo(rig.db),
                             bus=rig.guard.bus, clock=rig.clock, mode="paper")
    return rig, control


def our_closes(rig) -> list[OrderReport]:
    return [o for o in rig.exchange.orders.values()
            if o.kind is OrderKind.MARKET and o.client_id is not None]


async def test_a_close_in_flight_is_not_sent_twice(rig_factory: RigFactory) -> None:
    rig, control = await control_for(rig_factory)
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    market_order = rig.venue.market_order

    async def answered_before_the_fill(request: MarketOrderRequest) -> OrderReport:
        # Like Bybit and Bitget: the create answer carries ids only, not the fill.
        return replace(await market_order(request), status=OrderStatus.OPEN)

    rig.venue.market_order = answered_before_the_fill  # type: ignore[method-assign]
    [first] = await control.close([target()], "a")
    assert first.status is CloseStatus.SUBMITTED
    assert rig.guard.view.position(BTC) is not None  # no snapshot or stream has said flat yet
    [second] = await control.close([target()], "b")  # a second tap, another admin, /close_all
    assert second.status is CloseStatus.IN_PROGRESS
    assert len(our_closes(rig)) == 1


async def test_a_close_never_exceeds_the_approved_size_nor_hits_a_flipped_position(
        rig_factory: RigFactory) -> None:
    rig, control = await control_for(rig_factory)
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    rig.hand.open(BTC, LONG, D("0.3"))  # added by hand after the request
    await rig.guard.reconcile_now()
    [outcome] = await control.close([target(qty="0.5")], "a")
    assert outcome.status is not CloseStatus.FAILED
    assert [o.qty for o in our_closes(rig)] == [D("0.5")]
    assert rig.exchange.positions[BTC].qty == D("0.3")  # the rest stays, under its stop

    rig.hand.close(BTC)
    rig.hand.open(BTC, SHORT, D("0.2"))  # flipped since the (long) request
    await rig.guard.reconcile_now()
    [flipped] = await control.close([target(qty="0.5")], "a")
    assert flipped.status is CloseStatus.CHANGED and flipped.detail == "short"
    assert rig.exchange.positions[BTC].side is SHORT
