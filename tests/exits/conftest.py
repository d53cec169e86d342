"""A guard with exit plans over the simulated exchange, journaling into a real SQLite file."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from engine.bus import EventBus
from engine.clock import ManualClock
from engine.domain import events as ev
from engine.domain.reports import OrderKind, OrderReport, PriceTick
from engine.exits.book import AmendLimits, ExitBook, ExitDefaults
from engine.exits.plan import ExitPlan
from engine.metrics import Metrics
from engine.protection.guard import AccountGuard
from engine.protection.policy import FixedDistancePricer, ProtectionPolicy
from engine.sim.exchange import HandApi, SimExchange
from engine.sim.venue import FaultPlan, SimVenue
from storage.db import Database
from storage.exits import ExitRepo
from storage.journal import Journal
from storage.repositories import PositionRepo, StateRepo
from tests.engine.conftest import drive

BTC = "BTC/USDT:USDT"


class GappyVenue(SimVenue):
    """The simulated venue whose mark-price stream loses batches (stream gaps) at random, and
    which remembers each stop command with the mark the guard's view held when it was sent."""

    def __init__(self, *args: object, gap: float = 0.0, gap_seed: int = 0,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gap = gap
        self.gap_rng = random.Random(gap_seed)
        self.guard: AccountGuard | None = None
        # (method, trigger, the mark the guard's view held, when) of each stop command
        self.sent: list[tuple[str, Decimal, Decimal | None, float]] = []
        self.before_amend: list[object] = []  # callables run before the next amend executes

    async def price_ticks(self, symbols: frozenset[str]
                          ) -> AsyncIterator[tuple[PriceTick, ...]]:
        async for batch in super().price_ticks(symbols):
            if self.gap and self.gap_rng.random() < self.gap:
                continue
            yield batch

    def _seen_mark(self, symbol: str) -> Decimal | None:
        report = self.guard.view.position(symbol) if self.guard else None
        return report.mark_price if report else None

    async def place_stop(self, request):  # type: ignore[no-untyped-def]
        self.sent.append(("place_stop", request.trigger_price, self._seen_mark(request.symbol),
                          self.clock.monotonic()))
        return await super().place_stop(request)

    async def amend_stop(self, order, trigger_price, qty):  # type: ignore[no-untyped-def]
        self.sent.append(("amend_stop", trigger_price, self._seen_mark(order.symbol),
                          self.clock.monotonic()))
        while self.before_amend:
            self.before_amend.pop(0)()  # type: ignore[operator]
        return await super().amend_stop(order, trigger_price, qty)


@dataclass
class TrailRig:
    clock: ManualClock
    exchange: SimExchange
    hand: HandApi
    venue: GappyVenue
    db: Database
    journal: Journal
    guard: AccountGuard
    book: ExitBook
    events: list[ev.Event] = field(default_factory=list)

    def stops(self, symbol: str = BTC) -> list[OrderReport]:
        return [o for o in self.exchange.open_orders()
                if o.symbol == symbol and o.kind is OrderKind.STOP_LOSS]

    async def settle(self, rounds: int = 400) -> None:
        """Let ticks, wakes and their venue work finish (SQLite answers on its own thread; a
        retry back-off waits on the clock, which moves a little when nothing else can)."""
        idle = 0
        for _ in range(rounds):
            for _ in range(3):
                await asyncio.sleep(0)
            busy = [t for t in self.guard._tasks
                    if " ensure " in t.get_name() or t.get_name().endswith("ensure")]
            if not busy:
                idle += 1
                if idle > 3:
                    return
                continue
            idle = 0
            await asyncio.sleep(0.001)
            if not any(t.done() for t in busy):
                await self.clock.advance(0.05)
        raise AssertionError("the guard did not settle")

    async def look(self) -> None:
        """One reconcile pass (the loop's look), the clock moving while a retry waits on it."""
        await drive(self.clock, self.guard.reconcile_now())
        await self.settle()

    async def close(self) -> None:
        await self.guard.stop()
        await self.db.close()


async def trail_rig(tmp_path: Path, plan: ExitPlan, *, exchange: SimExchange | None = None,
                    limits: AmendLimits | None = None, amend_in_place: bool = True,
                    faults: FaultPlan | None = None, gap: float = 0.0, seed: int = 0,
                    db_name: str = "t.db", ticks: bool = True) -> TrailRig:
    clock = exchange.clock if exchange else ManualClock()
    assert isinstance(clock, ManualClock)
    exchange = exchange or SimExchange(clock, seed=seed + 1)
    venue = GappyVenue(exchange, clock, amend_in_place=amend_in_place, streaming=True,
                       faults=faults, gap=gap, gap_seed=seed)
    db = await Database.open(tmp_path / db_name)
    journal = Journal(db)
    bus = EventBus(journal.append, clock=clock)
    events: list[ev.Event] = []

    async def collect(event: ev.Event) -> None:
        events.append(event)
    bus.subscribe(collect)
    policy = ProtectionPolicy(FixedDistancePricer(Decimal(2)))
    book = ExitBook("paper", policy.pricer, ExitDefaults(plan),
                    limits or AmendLimits(min_interval_seconds=1.0), clock, exchange.market,
                    ExitRepo(db))
    guard = AccountGuard("paper", venue, bus=bus, store=PositionRepo(db), state=StateRepo(db),
                         policy=policy, metrics=Metrics(), clock=clock, interval_seconds=10,
                         seed=seed, exits=book)
    venue.guard = guard
    await guard.load()
    if ticks:
        assert guard.ticks is not None
        guard.spawn(guard.ticks.run(), "mark prices")
    return TrailRig(clock, exchange, HandApi(exchange), venue, db, journal, guard, book, events)
