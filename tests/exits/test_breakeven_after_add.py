"""Breakeven after an add: the position's entry is the venue's average, not the first fill's
price. Long 1 @ 100, add 1 @ 110: the average is 105, so breakeven fires at +x % of 105 and
moves the stop to 105; against the old entry it fired earlier and locked a loss at 100. Real
guard, SQLite file and simulated exchange, restarted on the same database between the add and
the move."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from engine.clock import ManualClock
from engine.domain import events as ev
from engine.domain.values import PositionSide
from engine.exits.plan import Breakeven, ExitPlan
from engine.sim.exchange import SimExchange
from storage.exits import ExitRepo
from storage.repositories import PositionRepo
from tests.exits.conftest import TrailRig, trail_rig

D = Decimal
SYM = "TST/USDT:USDT"
# +12 %: over the first entry (100) at 112, over the average (105) at 117.6; no fees or buffer,
# so the stop goes to the entry itself.
PLAN = ExitPlan(breakeven=Breakeven(at_percent=D(12), fee_percent=D(0), buffer_percent=D(0)))


def exchange() -> SimExchange:
    return SimExchange(ManualClock(), slippage_bps=D(0),
                       markets={SYM: ("100", "0.01", "1", "1")})


async def mark(rig: TrailRig, price: str) -> None:
    await rig.clock.advance(1.0)
    rig.exchange.set_mark(SYM, D(price))
    await rig.settle()


def stop_prices(rig: TrailRig) -> list[Decimal | None]:
    return [s.trigger_price for s in rig.stops(SYM)]


async def test_breakeven_after_an_add_goes_to_the_average_entry_across_a_restart(
        tmp_path: Path) -> None:
    ex = exchange()
    rig = await trail_rig(tmp_path, PLAN, exchange=ex)
    try:
        rig.hand.open(SYM, PositionSide.LONG, D(1))
        await rig.look()
        await rig.clock.advance(1.0)  # the tick feed subscribes to the guarded symbol
        await rig.settle()
        assert stop_prices(rig) == [D("98.00")]  # 2 % under 100
        await mark(rig, "110")  # +10 %: below the 12 % either way
        rig.hand.open(SYM, PositionSide.LONG, D(1))  # the add, at 110
        await rig.look()
        assert ex.positions[SYM].entry_price == D(105)
        [resized] = [e for e in rig.events if isinstance(e, ev.PositionResized)]
        assert resized.new_qty == D(2) and resized.entry_price == D(105)
        assert [(s.trigger_price, s.qty) for s in rig.stops(SYM)] == [(D("98.00"), D(2))]
    finally:
        await rig.close()

    again = await trail_rig(tmp_path, PLAN, exchange=ex)
    try:
        [stored] = await PositionRepo(again.db).load("paper")
        assert stored.entry_price == D(105)  # the journaled position took the average
        [trail] = await ExitRepo(again.db).load("paper")
        assert trail.state is not None and trail.state.entry == D(105)
        await again.look()
        await again.clock.advance(1.0)
        await again.settle()
        await mark(again, "113")  # +13 % over 100, +7.6 % over 105: breakeven waits
        assert stop_prices(again) == [D("98.00")]
        await mark(again, "118")  # +12.4 % over the average
        assert stop_prices(again) == [D(105)]  # the average, not the first entry's 100
        [view] = again.guard.positions()
        assert view.entry_price == D(105) and view.exit is not None
        assert view.exit.breakeven_done
    finally:
        await again.close()
