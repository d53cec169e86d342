"""Bugs the kill -9 soak (bench/soak.py, issue 14) found, each pinned by its own test."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from engine.domain.reports import OrderKind
from engine.domain.values import OrderSide, PositionSide
from engine.sim.venue import FaultPlan
from tests.engine.conftest import SOL, RigFactory, eventually


async def test_a_new_position_does_not_wait_out_the_back_off_of_the_one_before(
        rig_factory: RigFactory) -> None:
    """Soak seed 9: the venue refused every stop and close for a short (the back-off doubled to
    16 s); the hand then flipped the symbol long, and that new position sat without a stop for
    25 s, waiting out refusals that were about the old one. A new side or size on the venue
    lifts the back-off at once."""
    rig = await rig_factory(streaming=True)
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        rig.venue.faults = FaultPlan(reject=1.0)
        rig.hand.open(SOL, PositionSide.SHORT, D("10"))
        for _ in range(1200):  # refusals past the SLA: the pause doubles; flip in a long one
            await rig.clock.advance(0.1)
            await asyncio.sleep(0.002)
            sup = rig.guard.supervisors[SOL]
            if sup.backoff_until - rig.clock.monotonic() > 3:
                break
        assert sup.backoff_until - rig.clock.monotonic() > 3
        assert rig.stops(SOL) == []

        rig.venue.faults = FaultPlan()  # the venue heals, and the hand flips the symbol
        rig.exchange.market_order(symbol=SOL, side=OrderSide.BUY, qty=D("25"),
                                  reduce_only=False, client_id=None)
        for _ in range(4):
            await rig.clock.advance(0.25)
            await asyncio.sleep(0.005)
        (stop,) = rig.stops(SOL)
        assert stop.kind is OrderKind.STOP_LOSS and stop.side is OrderSide.SELL
        assert stop.qty == D("15")
    finally:
        await rig.guard.stop()
        run.cancel()
