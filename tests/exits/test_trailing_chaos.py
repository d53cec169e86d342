"""Randomized price paths with faults (amend/place rejected, timeouts, lost responses, stream
gaps), many seeds: the stop never loosens, is never sent through the mark the guard knew, the
position always has a stop, and the stop moves no more often than the limits allow."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from pathlib import Path

import pytest

from engine.domain.reports import (
    OrderKind,
    OrderReport,
    OrderStatus,
    OrderUpdate,
    PositionUpdate,
    VenueEvent,
)
from engine.domain.values import PositionSide, take_profit_on_tick
from engine.entries.model import PriceKind, PriceSpec
from engine.exits.book import AmendLimits
from engine.exits.plan import Breakeven, ExitPlan, Trailing
from engine.sim.venue import FaultPlan
from tests.engine.conftest import drive
from tests.exits.conftest import BTC, TrailRig, trail_rig

D = Decimal
LONG = PositionSide.LONG
PLAN = ExitPlan(breakeven=Breakeven(at_percent=D("0.8")), trailing=Trailing(D(1), D("0.6")))
LIMITS = AmendLimits(min_step_percent=D("0.05"), min_interval_seconds=1.0,
                     account_per_minute=30)
SEEDS = 24
STEPS = 90


class Invariants:
    """Follows the exchange's own events (synchronous, in order)."""

    def __init__(self, rig: TrailRig) -> None:
        self.rig = rig
        self.resting: dict[str, OrderReport] = {}
        self.open = False
        self.floor: Decimal | None = None  # the most protective stop that rested so far
        self.changes: list[tuple[float, Decimal]] = []  # (time, new floor)
        self.unprotected: list[float] = []
        self.loosened: list[tuple[Decimal, Decimal]] = []
        rig.exchange.listen(self.on_event)

    def on_event(self, event: VenueEvent) -> None:
        if isinstance(event, PositionUpdate) and event.symbol == BTC:
            self.open = event.position is not None
            if not self.open:
                self.floor = None
            return
        if not isinstance(event, OrderUpdate) or event.order.symbol != BTC:
            return
        order = event.order
        if order.is_resting and order.trigger_price is not None:
            self.resting[order.order_id] = order
        else:
            self.resting.pop(order.order_id, None)
        if not self.open or order.status is OrderStatus.TRIGGERED:
            return  # a stop firing: the position closes in the same instant
        stops = [o for o in self.resting.values() if o.is_stop_for(LONG)]
        if not stops:
            self.unprotected.append(self.rig.clock.monotonic())
            return
        best = max(o.trigger_price for o in stops if o.trigger_price is not None)
        if self.floor is not None and best < self.floor:
            self.loosened.append((self.floor, best))
        if self.floor is None or best > self.floor:
            if self.floor is not None:
                self.changes.append((self.rig.clock.monotonic(), best))
            self.floor = best


@pytest.mark.parametrize("seed", range(SEEDS))
async def test_random_paths_with_faults_keep_the_trail_safe(tmp_path: Path, seed: int) -> None:
    faults = FaultPlan(seed=seed, reject=0.08, timeout_before=0.04, lost_response=0.04,
                       transient=0.04)
    rig = await trail_rig(tmp_path, PLAN, limits=LIMITS, amend_in_place=seed % 2 == 0,
                          faults=faults, gap=0.25, seed=seed)
    rng = random.Random(seed)
    try:
        rig.hand.open(BTC, LONG, D("0.01"))
        check = Invariants(rig)
        check.open = True
        for _ in range(30):  # faults may need a few looks before the first stop rests
            await rig.look()
            if rig.stops():
                break
            await rig.clock.advance(1.0)
        assert rig.stops(), "no first stop"
        check.unprotected.clear()  # before the first stop the SLA rules, not the trail
        await rig.clock.advance(1.0)
        mark = rig.exchange.marks[BTC]
        for step in range(STEPS):
            if BTC not in rig.exchange.positions:
                break
            mark = mark * (1 + D(str(round(rng.gauss(0.0012, 0.004), 6))))
            await rig.clock.advance(rng.choice((0.2, 0.5, 1.0)))
            rig.exchange.set_mark(BTC, mark)
            mark = rig.exchange.marks[BTC]
            await rig.settle()
            if step % 15 == 14:  # the reconcile loop's look (and the snapshot marks)
                await rig.look()
        assert check.loosened == []
        assert check.unprotected == []
        for method, trigger, seen, _at in rig.venue.sent:
            assert seen is None or trigger < seen, (method, trigger, seen)
        times = [t for t, _ in check.changes]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(g >= LIMITS.min_interval_seconds - 1e-9 for g in gaps), gaps
        span = (times[-1] - times[0]) if len(times) > 1 else 0.0
        assert len(times) <= LIMITS.account_per_minute * (span / 60 + 1)
        if BTC in rig.exchange.positions:
            await rig.clock.advance(2.0)
            await rig.look()
            assert len(rig.stops()) == 1
    finally:
        await rig.close()


async def test_the_random_paths_do_move_stops(tmp_path: Path) -> None:
    """The paths above are not vacuous: without faults the trail moves the stop many times."""
    rig = await trail_rig(tmp_path, PLAN, limits=LIMITS, seed=3)
    rng = random.Random(3)
    try:
        rig.hand.open(BTC, LONG, D("0.01"))
        await rig.guard.reconcile_now()
        await rig.clock.advance(1.0)
        await rig.settle()
        check = Invariants(rig)
        check.open = True
        mark = rig.exchange.marks[BTC]
        for _ in range(STEPS):
            mark = mark * (1 + D(str(round(rng.gauss(0.002, 0.002), 6))))
            await rig.clock.advance(1.0)
            rig.exchange.set_mark(BTC, mark)
            await rig.settle()
        assert len(check.changes) >= 10
        assert check.loosened == []
    finally:
        await rig.close()


class TakeProfitWatch:
    """Our take-profits as the exchange reports them: never two at once, and whether one fired."""

    def __init__(self, rig: TrailRig) -> None:
        self.resting: dict[str, OrderReport] = {}
        self.most = 0
        self.fired = 0
        rig.exchange.listen(self.on_event)

    def on_event(self, event: VenueEvent) -> None:
        if not isinstance(event, OrderUpdate) or event.order.kind is not OrderKind.TAKE_PROFIT:
            return
        order = event.order
        if order.is_resting:
            self.resting[order.order_id] = order
        else:
            self.resting.pop(order.order_id, None)
            self.fired += order.status is OrderStatus.TRIGGERED
        self.most = max(self.most, len(self.resting))


@pytest.mark.parametrize("seed", range(12))
async def test_random_paths_with_take_profits_and_faults(tmp_path: Path, seed: int) -> None:
    """Trailing and a take-profit on one position, with hand adds and faults: the take-profit
    is never protection (a stop always rests), never two rest, it follows the size, and a
    position it closed leaves no order behind."""
    faults = FaultPlan(seed=seed, reject=0.05, timeout_before=0.04, lost_response=0.04,
                       transient=0.04)
    rig = await trail_rig(tmp_path, PLAN, limits=LIMITS, amend_in_place=seed % 2 == 0,
                          faults=faults, gap=0.25, seed=seed)
    rng = random.Random(1000 + seed)
    try:
        rig.hand.open(BTC, LONG, D("0.01"))
        check = Invariants(rig)
        check.open = True
        tps = TakeProfitWatch(rig)
        for _ in range(30):
            await rig.look()
            if rig.stops():
                break
            await rig.clock.advance(1.0)
        assert rig.stops(), "no first stop"
        check.unprotected.clear()
        target = rig.exchange.marks[BTC] * (1 + D(rng.choice((2, 3, 4))) / 100)
        await drive(rig.clock, rig.guard.set_take_profit(BTC, PriceSpec(PriceKind.PRICE,
                                                                        target)))
        await rig.settle()
        mark = rig.exchange.marks[BTC]
        for step in range(STEPS):
            if BTC not in rig.exchange.positions:
                break
            if rng.random() < 0.04:
                rig.hand.open(BTC, LONG, D("0.005"))  # a hand add: stop and TP follow it
            mark = mark * (1 + D(str(round(rng.gauss(0.0015, 0.004), 6))))
            await rig.clock.advance(rng.choice((0.2, 0.5, 1.0)))
            rig.exchange.set_mark(BTC, mark)
            mark = rig.exchange.marks[BTC]
            await rig.settle()
            if step % 10 == 9:
                await rig.look()
        assert check.loosened == [] and check.unprotected == []
        assert tps.most <= 1  # cancel, then place: never two of ours at once
        for _ in range(20):  # faults may need a few looks (and their back-offs) to settle;
            # a leftover whose cancel failed at the close goes as a zombie after its grace
            await rig.clock.advance(2.0)
            await rig.look()
        orders = rig.exchange.open_orders(BTC)
        if BTC not in rig.exchange.positions:
            assert orders == [], orders  # closed (by the TP or the stop): nothing left
            return
        qty = rig.exchange.positions[BTC].qty
        assert len(rig.stops()) == 1 and rig.stops()[0].qty == qty
        view = rig.guard.positions()[0]
        assert view.stop_price == rig.stops()[0].trigger_price  # the stop, never the TP
        resting_tps = [o for o in orders if o.kind is OrderKind.TAKE_PROFIT]
        assert all(not o.is_stop_for(LONG) for o in resting_tps)
        if rig.exchange.marks[BTC] < target:
            assert [(o.qty, o.trigger_price) for o in resting_tps] == [
                (qty, take_profit_on_tick(target, LONG, D("0.1")))]
    finally:
        await rig.close()


async def test_take_profits_fire_in_the_random_paths(tmp_path: Path) -> None:
    """Not vacuous: without faults, a rising path reaches the take-profit, which closes the
    position; nothing is left resting."""
    rig = await trail_rig(tmp_path, PLAN, limits=LIMITS, seed=5)
    try:
        rig.hand.open(BTC, LONG, D("0.01"))
        await rig.look()
        tps = TakeProfitWatch(rig)
        target = rig.exchange.marks[BTC] * D("1.01")
        await drive(rig.clock, rig.guard.set_take_profit(BTC, PriceSpec(PriceKind.PRICE,
                                                                        target)))
        await rig.settle()
        mark = rig.exchange.marks[BTC]
        while BTC in rig.exchange.positions:
            mark = mark * D("1.002")
            await rig.clock.advance(1.0)
            rig.exchange.set_mark(BTC, mark)
            await rig.settle()
        await rig.look()
        assert tps.fired == 1 and rig.exchange.open_orders(BTC) == []
    finally:
        await rig.close()
