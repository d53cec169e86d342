"""Shared parts for engine tests: a manual clock, the simulated exchange and a guard on real
SQLite files in tmp_path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.bus import EventBus
from engine.clock import ManualClock
from engine.domain import events as ev
from engine.domain.reports import (
    OrderKind,
    OrderReport,
    OrderUpdate,
    PositionUpdate,
    VenueEvent,
)
from engine.metrics import Metrics
from engine.protection.guard import AccountGuard
from engine.protection.policy import FixedDistancePricer, ProtectionPolicy
from engine.sim.exchange import HandApi, SimExchange
from engine.sim.venue import FaultPlan, SimVenue
from storage.db import Database
from storage.journal import Journal
from storage.repositories import PositionRepo, StateRepo

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
SOL = "SOL/USDT:USDT"
XRP = "XRP/USDT:USDT"
ACCOUNT = "paper"


class RecordingClock(ManualClock):
    """A manual clock that remembers every sleep asked of it (back-offs, intervals)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


class MemoryState:
    """StateStore in a dict: survives a "restart" when the next instance gets the same one."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], Any] = {}

    async def get(self, scope: str, key: str, default: Any = None) -> Any:
        return self.values.get((scope, key), default)

    async def put(self, scope: str, key: str, value: Any) -> None:
        self.values[scope, key] = value

    async def incr(self, scope: str, key: str) -> int:
        self.values[scope, key] = int(self.values.get((scope, key), 0)) + 1
        return int(self.values[scope, key])


@dataclass
class Rig:
    """One account: exchange, hand, venue, and a guard journaling into a real SQLite file."""

    clock: ManualClock
    exchange: SimExchange
    hand: HandApi
    venue: SimVenue
    db: Database
    journal: Journal
    guard: AccountGuard
    metrics: Metrics
    events: list[ev.Event] = field(default_factory=list)
    port: object = None  # what the guard talks to: the SimVenue or a wrapper around it

    async def kinds(self) -> list[str]:
        return [row.kind for row in await self.journal.rows()]

    async def rows(self, *kinds: str) -> list[dict]:
        return [row.payload | {"kind": row.kind, "id": row.id}
                for row in await self.journal.rows(kinds=kinds)]

    def stops(self, symbol: str) -> list[OrderReport]:
        return [o for o in self.exchange.open_orders()
                if o.symbol == symbol and o.kind is OrderKind.STOP_LOSS]

    def ttp_count(self) -> float:
        return self.metrics.registry.get_sample_value(
            "vigil_time_to_protect_seconds_count", {"account": ACCOUNT}) or 0.0


async def open_db(path: Path) -> tuple[Database, Journal]:
    db = await Database.open(path)
    return db, Journal(db)


def make_guard(venue: SimVenue, db: Database, journal: Journal, clock: ManualClock,
               policy: ProtectionPolicy, metrics: Metrics,
               sink: list[ev.Event] | None = None, interval: float = 10) -> AccountGuard:
    bus = EventBus(journal.append, clock=clock)
    if sink is not None:
        async def collect(event: ev.Event) -> None:
            sink.append(event)
        bus.subscribe(collect)
    return AccountGuard(ACCOUNT, venue, bus=bus, store=PositionRepo(db), state=StateRepo(db),
                        policy=policy, metrics=metrics, clock=clock, interval_seconds=interval,
                        seed=7)


def default_policy(**kwargs: object) -> ProtectionPolicy:
    return ProtectionPolicy(FixedDistancePricer(Decimal(2)), **kwargs)  # type: ignore[arg-type]


RigFactory = Callable[..., Awaitable[Rig]]


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Bounded wait for work that goes through SQLite's thread (not clock-driven)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


async def drive(clock: ManualClock, awaitable: Awaitable[object], step: float = 0.05,
                limit: float = 120.0) -> object:
    """Run `awaitable` while moving the manual clock whenever it is blocked (retry backoffs)."""
    task = asyncio.ensure_future(awaitable)
    start = clock.monotonic()
    while not task.done():
        await asyncio.sleep(0.001)  # lets SQLite's thread finish before time moves
        if task.done():
            break
        if clock.monotonic() - start > limit:
            task.cancel()
            raise AssertionError("still blocked after the time limit")
        await clock.advance(step)
    return task.result()


@dataclass
class StopWatch:
    """Replays the exchange's own event stream (emitted synchronously at every mutation, in
    order) and records every moment an open position had no resting stop-loss on its close
    side."""

    clock: ManualClock
    queue: asyncio.Queue[VenueEvent]
    resting: dict[str, OrderReport] = field(default_factory=dict)
    positions: dict[str, object] = field(default_factory=dict)
    gaps: list[tuple[str, float]] = field(default_factory=list)  # (symbol, at) of each moment

    @classmethod
    def attach(cls, exchange: SimExchange, clock: ManualClock) -> StopWatch:
        watch = cls(clock, exchange.subscribe())
        for order in exchange.open_orders():
            watch.resting[order.order_id] = order
        for symbol in exchange.positions:
            watch.positions[symbol] = exchange.position_report(symbol)
        return watch

    def drain(self) -> None:
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if isinstance(event, OrderUpdate):
                order = event.order
                if order.is_resting:
                    self.resting[order.order_id] = order
                else:
                    self.resting.pop(order.order_id, None)
                self._check(order.symbol)
            elif isinstance(event, PositionUpdate):
                if event.position is None:
                    self.positions.pop(event.symbol, None)
                else:
                    self.positions[event.symbol] = event.position
                self._check(event.symbol)

    def _check(self, symbol: str) -> None:
        position = self.positions.get(symbol)
        if position is None:
            return
        side = position.side  # type: ignore[attr-defined]
        if not any(o.symbol == symbol and o.is_stop_for(side) for o in self.resting.values()):
            self.gaps.append((symbol, self.clock.monotonic()))


class SpyVenue:
    """The SimVenue behind a hook run before every command (and lookups), with a log."""

    def __init__(self, inner: SimVenue) -> None:
        self.inner = inner
        self.name = inner.name
        self.log: list[tuple[str, str | None]] = []
        self.before: Callable[[str, object], Awaitable[None]] | None = None

    def __getattr__(self, item: str) -> object:
        return getattr(self.inner, item)

    @property
    def capabilities(self):  # type: ignore[no-untyped-def]
        return self.inner.capabilities

    async def _hook(self, method: str, arg: object, client_id: str | None) -> None:
        self.log.append((method, client_id))
        if self.before is not None:
            await self.before(method, arg)

    async def snapshot(self):  # type: ignore[no-untyped-def]
        await self._hook("snapshot", None, None)
        return await self.inner.snapshot()

    async def find_order(self, symbol: str, client_id: str):  # type: ignore[no-untyped-def]
        await self._hook("find_order", symbol, client_id)
        return await self.inner.find_order(symbol, client_id)

    async def place_stop(self, request):  # type: ignore[no-untyped-def]
        await self._hook("place_stop", request, request.client_id)
        return await self.inner.place_stop(request)

    async def amend_stop(self, order, trigger_price, qty):  # type: ignore[no-untyped-def]
        await self._hook("amend_stop", order, order.client_id)
        return await self.inner.amend_stop(order, trigger_price, qty)

    async def cancel_order(self, order):  # type: ignore[no-untyped-def]
        await self._hook("cancel_order", order, order.client_id)
        return await self.inner.cancel_order(order)

    async def market_order(self, request):  # type: ignore[no-untyped-def]
        await self._hook("market_order", request, request.client_id)
        return await self.inner.market_order(request)

    def commands(self) -> list[str]:
        return [m for m, _ in self.log if m not in ("snapshot", "find_order")]

    def fail_first(self, method: str, times: int, error: Callable[[], Exception]) -> list[int]:
        """The next `times` calls of `method` raise `error()` before reaching the venue.
        Returns a one-item list counting the failures still to come."""
        left = [times]

        async def fail(called: str, arg: object) -> None:
            if called == method and left[0]:
                left[0] -= 1
                raise error()

        self.before = fail
        return left


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[RigFactory]:
    """Build rigs (several may share one exchange and one DB file, e.g. for a restart)."""
    opened: list[Database] = []

    async def build(*, policy: ProtectionPolicy | None = None, amend_in_place: bool = True,
                    streaming: bool = False, faults: FaultPlan | None = None,
                    exchange: SimExchange | None = None, clock: ManualClock | None = None,
                    db_name: str = "v.db", interval: float = 10, load: bool = True,
                    latency: float = 0.0, spy: bool = False,
                    attached_stop: bool = False) -> Rig:
        clock = clock or (exchange.clock if exchange else RecordingClock())  # type: ignore[assignment]
        assert isinstance(clock, ManualClock)
        exchange = exchange or SimExchange(clock, seed=1)
        venue = SimVenue(exchange, clock, amend_in_place=amend_in_place, streaming=streaming,
                         faults=faults, latency=latency, attached_stop=attached_stop)
        port: SimVenue | SpyVenue = SpyVenue(venue) if spy else venue
        db, journal = await open_db(tmp_path / db_name)
        opened.append(db)
        metrics = Metrics()
        sink: list[ev.Event] = []
        guard = make_guard(port, db, journal, clock, policy or default_policy(),  # type: ignore[arg-type]
                           metrics, sink, interval)
        if load:
            await guard.load()
        return Rig(clock, exchange, HandApi(exchange), venue, db, journal, guard, metrics, sink,
                   port)

    yield build
    for db in opened:
        await db.close()


SpyRigFactory = Callable[..., Awaitable[tuple[Rig, SpyVenue]]]


@pytest.fixture
def spy_rig(rig_factory: RigFactory) -> SpyRigFactory:
    """A rig whose guard talks to a SpyVenue: (rig, spy)."""

    async def build(**kwargs: Any) -> tuple[Rig, SpyVenue]:
        rig = await rig_factory(spy=True, **kwargs)
        assert isinstance(rig.port, SpyVenue)
        return rig, rig.port

    return build
