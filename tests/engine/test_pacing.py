"""LoopPacer: thousands of steps ready in one loop turn take turns, in arrival order, a
measured batch per turn; an uncrowded loop never waits (issue 16: the first cycle at 2,000)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from itertools import count
from pathlib import Path

import pytest

from engine.clock import ManualClock
from engine.domain.reports import MarketInfo
from engine.domain.values import PositionSide
from engine.pacing import LoopPacer
from engine.sim.exchange import HandApi
from tests.engine.conftest import RigFactory
from vigil.runtime import Engine
from vigil.settings import load_settings


class StepTimer:
    """Scripted CPU time: each paced step "costs" `step` seconds once it passes."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.now += self.step


class TurnCounter:
    """Counts loop turns: a callback that re-schedules itself runs once per turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._handle: asyncio.Handle | None = None

    def start(self) -> TurnCounter:
        self._handle = asyncio.get_running_loop().call_soon(self._tick)
        return self

    def _tick(self) -> None:
        self.turn += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        assert self._handle is not None
        self._handle.cancel()


async def crowd(pacer: LoopPacer, timer: StepTimer, n: int) -> list[tuple[int, int]]:
    """n tasks made ready in the same turn, each: pace, then a step of work; (task, turn)."""
    turns = TurnCounter()
    passed: list[tuple[int, int]] = []
    go = asyncio.Event()

    async def step(i: int) -> None:
        await go.wait()
        await pacer()
        passed.append((i, turns.turn))
        timer.work()

    tasks = [asyncio.create_task(step(i)) for i in range(n)]
    await asyncio.sleep(0)  # all wait on the event
    turns.start()
    go.set()  # every task becomes ready in the same turn, as after one batch commit
    await asyncio.gather(*tasks)
    turns.stop()
    return passed


async def test_a_crowded_turn_is_split_into_batches_within_budget_in_arrival_order() -> None:
    timer = StepTimer(0.001)
    pacer = LoopPacer(0.010, timer=timer)

    passed = await crowd(pacer, timer, 100)

    assert [i for i, _ in passed] == list(range(100))  # first come, first through
    per_turn: dict[int, int] = {}
    for _, turn in passed:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    # 1 ms a step, 10 ms a turn: never more than the budget's worth of steps in one turn
    assert max(per_turn.values()) <= 10
    assert len(per_turn) >= 10
    assert pacer.waits == 90


async def test_an_uncrowded_loop_never_waits() -> None:
    timer = StepTimer(0.001)
    pacer = LoopPacer(0.010, timer=timer)

    passed = await crowd(pacer, timer, 8)

    assert len({turn for _, turn in passed}) == 1
    assert pacer.waits == 0


async def test_the_batch_shrinks_when_steps_cost_more_than_measured() -> None:
    timer = StepTimer(0.001)
    pacer = LoopPacer(0.010, timer=timer)
    turns = TurnCounter()
    passed: list[int] = []

    async def step(i: int) -> None:
        await pacer()
        passed.append(turns.turn)
        # the first turn's steps measured 1 ms; later ones cost 4 ms each
        timer.now += 0.001 if i < 10 else 0.004

    turns.start()
    await asyncio.gather(*(step(i) for i in range(60)))
    turns.stop()
    later = [passed.count(t) for t in sorted(set(passed))][2:]
    assert later and max(later) <= 5  # scaled down from 10 toward 10 ms / 4 ms


async def test_a_cancelled_waiter_does_not_hold_the_others() -> None:
    timer = StepTimer(0.005)
    pacer = LoopPacer(0.010, timer=timer)
    done: list[int] = []

    async def step(i: int) -> None:
        await pacer()
        timer.work()
        done.append(i)

    tasks = [asyncio.create_task(step(i)) for i in range(10)]
    await asyncio.sleep(0)  # the first two passed, the rest wait
    tasks[5].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert done == [0, 1, 2, 3, 4, 6, 7, 8, 9]


def test_a_pacer_survives_its_loop() -> None:
    """Tests run one loop after another: state from a closed loop must not block the next."""
    timer = StepTimer(0.004)
    pacer = LoopPacer(0.010, timer=timer)

    async def burst() -> int:
        async def step() -> None:
            await pacer()
            timer.work()
        await asyncio.gather(*(step() for _ in range(20)))
        return pacer.waits

    assert asyncio.run(burst()) > 0
    asyncio.run(asyncio.wait_for(burst(), 5))


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        LoopPacer(0)


async def test_the_guard_paces_a_big_first_cycle_and_protects_every_position(
        rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    ticks = count()
    # every look at the timer is 1 ms later: 300 supervisors' steps cannot share one turn
    rig.guard.pacer._timer = lambda: next(ticks) * 0.001
    symbols = [f"P{i:03d}/USDT:USDT" for i in range(300)]
    hand = HandApi(rig.exchange)
    for symbol in symbols:
        rig.exchange.markets[symbol] = MarketInfo(symbol, Decimal("0.01"), Decimal("0.1"),
                                                  Decimal("0.1"))
        rig.exchange.set_mark(symbol, Decimal("100"))
        hand.open(symbol, PositionSide.LONG, Decimal("1"))

    report = await rig.guard.reconcile_now()

    assert len(report.unprotected_before) == 300 and report.unprotected_after == ()
    assert all(len(rig.stops(s)) == 1 for s in symbols)
    assert rig.guard.pacer.waits > 0 and rig.guard.pacer.turns > 0


async def test_every_account_of_an_engine_shares_the_one_pacer_of_its_loop(
        tmp_path: Path) -> None:
    """One loop, one budget per turn: a pacer per account would let each account's steps use
    a whole budget of the same turn."""
    settings = load_settings(None, data_dir=tmp_path / "data",
                             accounts=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    engine = await Engine.build(settings, ManualClock())
    try:
        pacers = {id(guard.pacer) for guard in engine.guards.values()}
        assert len(engine.guards) == 3 and len(pacers) == 1
        assert all(guard.ctx.pace is guard.pacer for guard in engine.guards.values())
    finally:
        await engine.close()
