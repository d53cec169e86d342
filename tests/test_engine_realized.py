"""Engine-level checks over the paper venue: the loss cap's realized figure comes from the venue's
own ledger (fees included); `vigil check`'s verdict on orphaned stops."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from engine.clock import ManualClock
from engine.domain.values import OrderSide, PositionSide
from engine.sim.exchange import HandApi
from engine.sim.venue import FaultPlan, SimVenue
from vigil.runtime import Engine
from vigil.settings import load_settings

ETH, SOL = "ETH/USDT:USDT", "SOL/USDT:USDT"


async def test_realized_since_sums_the_ledger_net_of_fees(tmp_path: Path) -> None:
    clock = ManualClock()
    engine = await Engine.build(load_settings(None, data_dir=tmp_path / "data"), clock)
    try:
        since = clock.now() - timedelta(minutes=1)
        sim = engine.sims["paper"]
        opening_fees = sum((f.fee for f in sim.fills), Decimal(0))  # the demo's two entries
        assert await engine.realized_since("paper", since) == -opening_fees

        sim.set_mark(ETH, Decimal("3100"))  # the demo's ETH short is in profit
        HandApi(sim).close(ETH, Decimal("0.5"))
        closing = sim.fills[-1]
        await clock.advance(31)  # past the loss cap's ledger freshness
        expected = closing.realized_pnl - closing.fee - opening_fees
        assert await engine.realized_since("paper", since) == expected
        assert closing.realized_pnl > 0
        assert await engine.realized_since("paper", clock.now()) == 0  # nothing since now
        HandApi(sim).open(ETH, PositionSide.SHORT, Decimal("1"))
        assert await engine.realized_since("paper", since) == expected  # fresh enough: cached
    finally:
        await engine.stop()
        await engine.close()


async def test_check_fails_while_an_overdue_orphaned_stop_survives_its_cancel(
        tmp_path: Path) -> None:
    """`vigil check`'s verdict: an orphan past its grace still resting (the venue refused the
    cancel) is a failure; one inside its grace is reported and left, and is not."""
    clock = ManualClock()
    engine = await Engine.build(load_settings(None, data_dir=tmp_path / "data"), clock)
    try:
        sim = engine.sims["paper"]
        hand = HandApi(sim)
        for order in sim.open_orders():
            hand.cancel(order.order_id)
        hand.close("BTC/USDT:USDT")
        hand.close(ETH)
        old = hand.place_old_stop(SOL, OrderSide.SELL, Decimal(1), Decimal(140), 600)
        young = hand.place_old_stop(ETH, OrderSide.BUY, Decimal(1), Decimal(3300), 12)
        venue = engine.venues["paper"]
        assert isinstance(venue, SimVenue)
        venue.faults = FaultPlan(reject=1.0)  # every cancel refused

        reports, orphans, ok = await engine.check()

        assert not ok and reports[0].error is None
        assert [(o.order.order_id, o.overdue, o.age) for o in orphans["paper"]] == [
            (young.order_id, False, timedelta(seconds=12)),
            (old.order_id, True, timedelta(seconds=600))]
        assert {o.order_id for o in sim.open_orders()} == {old.order_id, young.order_id}
    finally:
        await engine.stop()
        await engine.close()
