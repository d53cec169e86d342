"""One account's exit plans and trail states: the supervisors' `StopPricer`.

The book never touches an order. A tick is evaluated in memory (`on_mark`); when the plan wants
a tighter stop and the rate limits allow one more amend, the book *releases* that price and asks
for the position's supervisor to look. The supervisor, holding the symbol's writer lock, re-plans
from the freshest view, reads the released price through `desired_stop`, has the book persist
the trail state (`before_move`) and only then sends the amend. So there is one writer, the stop
only tightens (`plan_position` moves it only in the protective direction and never through the
mark), and a restart resumes from the stored state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from engine.clock import Clock
from engine.domain import events as ev
from engine.domain.position import GuardedPosition
from engine.domain.reports import MarketInfo, PositionReport
from engine.domain.values import HUNDRED, PositionSide
from engine.exits.plan import (
    ExitPlan,
    ExitView,
    TrailState,
    evaluate,
    is_tighter,
    tighter,
)
from engine.protection.policy import StopPricer


@dataclass(frozen=True, slots=True)
class AmendLimits:
    """How often a trailing stop may be amended: per position a minimum step (the larger of
    `min_step_ticks` ticks and `min_step_percent` of the price) and a minimum interval; per
    account at most `account_per_minute` amends (the venue's order-rate budget)."""

    min_step_percent: Decimal = Decimal("0.05")
    min_step_ticks: int = 1
    min_interval_seconds: float = 2.0
    account_per_minute: int = 60


class TokenBucket:
    """`rate` tokens per minute, at most `rate` at once; refilled from the monotonic clock."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.capacity = float(per_minute)
        self.tokens = float(per_minute)
        self.per_second = per_minute / 60.0
        self.clock = clock
        self.at = clock.monotonic()

    def take(self) -> bool:
        now = self.clock.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(frozen=True, slots=True)
class StoredExit:
    """What survives a restart: the position's own plan (None: the defaults) and its state."""

    account: str
    symbol: str
    plan: ExitPlan | None
    state: TrailState | None


class ExitStore(Protocol):
    async def save(self, row: StoredExit) -> None: ...

    async def delete(self, account: str, symbol: str) -> None: ...

    async def load(self, account: str) -> list[StoredExit]: ...


@dataclass(frozen=True, slots=True)
class ExitDefaults:
    """The `[exits]` settings: one plan for every symbol, and plans per symbol."""

    plan: ExitPlan = field(default_factory=ExitPlan)
    per_symbol: dict[str, ExitPlan] = field(default_factory=dict)

    def for_symbol(self, symbol: str) -> ExitPlan:
        return self.per_symbol.get(symbol, self.plan)


class ExitBook:
    def __init__(self, account: str, base: StopPricer, defaults: ExitDefaults,
                 limits: AmendLimits, clock: Clock, market: Callable[[str], MarketInfo],
                 store: ExitStore | None = None) -> None:
        self.account = account
        self.base = base
        self.defaults = defaults
        self.limits = limits
        self.clock = clock
        self.market = market
        self.store = store
        self.plans: dict[str, ExitPlan] = {}  # per position, from Telegram
        self.states: dict[str, TrailState] = {}
        self.released: dict[str, Decimal] = {}  # allowed by the limits, for the supervisor
        # A move the per-position interval held back: the latest mark that wanted it (the
        # guard sets a timer for `held_until`, so it goes then even if no tick comes). One
        # dict store per held tick: the tick path stays cheap.
        self.held: dict[str, Decimal] = {}
        self.in_flight: set[str] = set()  # an amend was sent and has not been answered yet
        self.bucket = TokenBucket(limits.account_per_minute, clock)
        self._interval = timedelta(seconds=limits.min_interval_seconds)
        self.ticks_evaluated = 0
        self.version = 0  # bumped when a plan changes (the tick feed's symbols may change)
        self.releases = 0

    # --- plans -------------------------------------------------------------------------------
    def plan_for(self, symbol: str) -> ExitPlan:
        plan = self.plans.get(symbol)
        return plan if plan is not None else self.defaults.for_symbol(symbol)

    async def set_plan(self, known: GuardedPosition, plan: ExitPlan) -> TrailState:
        """A position's own plan (Telegram). Its state carries over: a running trail keeps its
        best mark and the stop never loosens; a trail turned off stops moving the stop."""
        self.plans[known.symbol] = plan
        self.version += 1
        state = self._state(known)
        await self._save(known.symbol, state)
        return state

    async def load(self) -> None:
        if self.store is None:
            return
        for row in await self.store.load(self.account):
            if row.plan is not None:
                self.plans[row.symbol] = row.plan
            if row.state is not None:
                self.states[row.symbol] = row.state

    # --- ticks -------------------------------------------------------------------------------
    def on_mark(self, known: GuardedPosition, mark: Decimal, now: datetime) -> bool:
        """Evaluate one mark price for a guarded position. True: a tighter stop was released
        and the position's supervisor should look. No I/O."""
        symbol = known.symbol
        plan = self.plans.get(symbol)
        if plan is None:
            plan = self.defaults.for_symbol(symbol)
        if not plan.moves:
            return False
        self.ticks_evaluated += 1
        state = self.states.get(symbol)
        if state is None or state.generation != known.generation or state.side is not known.side:
            state = self._state(known)
        new = evaluate(plan, state, mark)
        if new is not state:
            self.states[symbol] = new
        elif symbol not in self.released and (
                state.wanted is None or state.wanted == state.last_amend_price):
            return False  # nothing new and nothing waiting
        return self._release(known, new, mark, now)

    def _release(self, known: GuardedPosition, state: TrailState, mark: Decimal,
                 now: datetime) -> bool:
        wanted, side = state.wanted, state.side
        if wanted is None or not is_tighter(side, mark, wanted):
            return False  # nothing to move to, or it would be through the mark
        released = self.released.get(known.symbol)
        current = tighter(side, known.stop.trigger_price if known.stop else None, released)
        if current is not None:
            if not is_tighter(side, wanted, current):
                return False
            step = max(self.market(known.symbol).tick * self.limits.min_step_ticks,
                       current * self.limits.min_step_percent / HUNDRED)
            if abs(wanted - current) < step:
                return False
        if known.symbol in self.in_flight or (
                state.last_amend_at is not None and now - state.last_amend_at < self._interval):
            # (In flight: the interval counts from its answer, which has not come yet.)
            self.held[known.symbol] = mark
            return False
        if not self.bucket.take():
            return False
        self.held.pop(known.symbol, None)
        self.released[known.symbol] = wanted
        self.releases += 1
        return True

    # --- the StopPricer ------------------------------------------------------------------------
    def desired_stop(self, position: PositionReport, last_stop: Decimal | None) -> Decimal:
        symbol = position.symbol
        plan = self.plan_for(symbol)
        if last_stop is None and plan.stop_percent is not None:
            pct = plan.stop_percent / HUNDRED
            base = position.entry_price * (1 - pct * position.side.sign)
        else:
            base = self.base.desired_stop(position, last_stop)
        state = self.states.get(symbol)
        if state is None or state.side is not position.side:
            return base
        # A stop that rested already (last amend) is never given up, even if it was cancelled
        # by hand; a released move is taken once the limits allowed it.
        floor = tighter(position.side, state.last_amend_price, self.released.get(symbol))
        return tighter(position.side, base, floor) or base

    def held_until(self, symbol: str) -> datetime | None:
        """When a held-back move of `symbol` may go (None: none is held)."""
        state = self.states.get(symbol)
        if symbol not in self.held or state is None or state.last_amend_at is None:
            return None
        if symbol in self.in_flight:  # look again an interval on; its answer resets the clock
            return self.clock.now() + self._interval
        return state.last_amend_at + self._interval

    # --- the TakeProfitPricer ------------------------------------------------------------------
    def take_profit(self, symbol: str) -> Decimal | None:
        return self.plan_for(symbol).take_profit

    # --- the supervisor's hooks ------------------------------------------------------------------
    async def before_move(self, known: GuardedPosition, price: Decimal) -> None:
        """Persist the trail state with this amend before the amend is sent."""
        symbol = known.symbol
        state = self.states.get(symbol)
        if state is None or state.generation != known.generation:
            state = self._state(known)
        state = replace(state, last_amend_at=self.clock.now(), last_amend_price=price,
                        wanted=tighter(state.side, state.wanted, price))
        self.states[symbol] = state
        await self._save(symbol, state)
        self.in_flight.add(symbol)  # until after_move (the supervisor calls it, whatever comes)

    def after_move(self, symbol: str, price: Decimal, done: bool) -> None:
        """The interval counts from when the venue answered (retries may have taken a while;
        a lost response may have moved the stop all the same)."""
        self.in_flight.discard(symbol)
        state = self.states.get(symbol)
        if state is not None:
            self.states[symbol] = replace(state, last_amend_at=self.clock.now())
        released = self.released.get(symbol)
        if done and released is not None and released == price:
            del self.released[symbol]

    async def resized(self, known: GuardedPosition) -> None:
        """The position's size changed: a trail state whose breakeven has not fired yet takes
        the venue's new average entry (an add at a higher price must not make breakeven lock a
        loss below the average), and its 1 R while the first stop still stands. A stop already
        moved never loosens: `wanted` and the last amend stay as they are."""
        state = self.states.get(known.symbol)
        if (state is None or state.generation != known.generation or state.side is not known.side
                or state.breakeven_done or state.entry == known.entry_price):
            return
        risk = state.risk
        if state.last_amend_price is None and known.stop is not None:
            risk = abs(known.entry_price - known.stop.trigger_price)
        state = replace(state, entry=known.entry_price, risk=risk)
        self.states[known.symbol] = state
        await self._save(known.symbol, state)

    async def forget(self, symbol: str) -> None:
        """The position closed: its plan and state go with it."""
        self.plans.pop(symbol, None)
        self.version += 1
        self.states.pop(symbol, None)
        self.released.pop(symbol, None)
        self.held.pop(symbol, None)
        self.in_flight.discard(symbol)
        if self.store is not None:
            await self.store.delete(self.account, symbol)

    # --- a plan belongs to its position (its generation), never to the symbol ------------------
    async def prune(self, alive: Mapping[str, GuardedPosition]) -> list[ev.ExitPlanDropped]:
        """Start-up, after the journal's positions are loaded: a plan or trail state whose
        position the journal no longer holds (or holds another generation or side of) is
        dropped, so a later position on the symbol never inherits it."""
        dropped = []
        for symbol in sorted(set(self.plans) | set(self.states)):
            known, state = alive.get(symbol), self.states.get(symbol)
            if (known is None or state is None or state.generation != known.generation
                    or state.side is not known.side):
                dropped.append(await self._drop(symbol, "position_gone"))
        return dropped

    async def check_resumed(self, known: GuardedPosition, entry_price: Decimal,
                            stop_rests: bool) -> ev.ExitPlanDropped | None:
        """The first look at a journaled position after a restart. Venues without open times
        (ccxt) show a position closed while Vigil was stopped and re-opened on the same side
        as the same one: another entry price with our stop gone means it is not the position
        the plan was made for (an add keeps our stop resting: the plan stays)."""
        if known.symbol not in self.plans and known.symbol not in self.states:
            return None
        if entry_price == known.entry_price or stop_rests:
            return None
        return await self._drop(known.symbol, "position_replaced")

    async def _drop(self, symbol: str, why: str) -> ev.ExitPlanDropped:
        plan, state = self.plans.get(symbol), self.states.get(symbol)
        await self.forget(symbol)
        return ev.ExitPlanDropped(
            account=self.account, symbol=symbol,
            generation=state.generation if state is not None else None,
            side=state.side if state is not None else None,
            entry_price=state.entry if state is not None else None, why=why,
            take_profit=plan.take_profit if plan is not None else None,
            trailing=plan is not None and plan.trailing is not None,
            breakeven=plan is not None and (plan.breakeven is not None or bool(plan.ladder)))

    async def move_by_hand(self, known: GuardedPosition, price: Decimal) -> None:
        """A person asked for a tighter stop (/sl): released at once, past the rate limits."""
        state = self._state(known)
        state = replace(state, wanted=tighter(state.side, state.wanted, price))
        self.states[known.symbol] = state
        self.released[known.symbol] = price
        await self._save(known.symbol, state)

    async def loosen_by_hand(self, known: GuardedPosition) -> None:
        """A confirmed looser stop: the plan's moves end (else they would tighten it straight
        back) and the floor of earlier amends is dropped."""
        plan = self.plan_for(known.symbol)  # its take-profit stays: it moves no stop
        self.plans[known.symbol] = ExitPlan(stop_percent=plan.stop_percent,
                                            take_profit=plan.take_profit)
        self.version += 1
        state = replace(self._state(known), wanted=None, last_amend_price=None, activated=False,
                        best_mark=None)
        self.states[known.symbol] = state
        self.released.pop(known.symbol, None)
        await self._save(known.symbol, state)

    def view(self, symbol: str, side: PositionSide) -> ExitView:
        plan = self.plan_for(symbol)
        state = self.states.get(symbol)
        if state is not None and state.side is not side:
            state = None
        return ExitView(
            plan=plan, activated=bool(state and state.activated),
            best_mark=state.best_mark if state else None,
            breakeven_done=bool(state and state.breakeven_done))

    # --- helpers ---------------------------------------------------------------------------------
    def _state(self, known: GuardedPosition) -> TrailState:
        state = self.states.get(known.symbol)
        if state is not None and state.generation == known.generation \
                and state.side is known.side:
            return state
        risk = None
        if known.stop is not None:
            risk = abs(known.entry_price - known.stop.trigger_price)
        state = TrailState(generation=known.generation, side=known.side,
                           entry=known.entry_price, risk=risk)
        self.states[known.symbol] = state
        self.released.pop(known.symbol, None)
        return state

    async def _save(self, symbol: str, state: TrailState) -> None:
        if self.store is not None:
            await self.store.save(StoredExit(self.account, symbol, self.plans.get(symbol),
                                             state))
