"""A position's exit plan and its trail state, and the pure evaluation of one mark price.

`evaluate` is the whole policy: no I/O, no clock, a few Decimal operations per tick, and it
returns the very same state object when the tick changes nothing (the common case once a trail
is running: most ticks are not a new best mark), so the caller can skip all further work on
an identity check.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from engine.domain.values import HUNDRED, PositionSide


@dataclass(frozen=True, slots=True)
class Breakeven:
    """After the price moved `at_percent` (or `at_r` times the initial risk) in favour, the stop
    goes to entry plus the round-trip fees and a buffer (in % of entry)."""

    at_percent: Decimal | None = None
    at_r: Decimal | None = None
    fee_percent: Decimal = Decimal("0.1")
    buffer_percent: Decimal = Decimal("0.05")

    def __post_init__(self) -> None:
        if self.at_percent is None and self.at_r is None:
            raise ValueError("breakeven needs at_percent or at_r")


@dataclass(frozen=True, slots=True)
class Trailing:
    """Active once the price moved `activation_percent` in favour; the stop then follows the best
    mark since activation at `callback_percent` behind it."""

    activation_percent: Decimal
    callback_percent: Decimal

    def __post_init__(self) -> None:
        if self.activation_percent < 0:
            raise ValueError("activation must be 0 % or more")
        if not Decimal(0) < self.callback_percent < HUNDRED:
            raise ValueError("callback must be between 0 % and 100 %")


@dataclass(frozen=True, slots=True)
class LadderStep:
    """At +`at_percent`, lock `lock_percent` of entry (the stop to entry +/- lock)."""

    at_percent: Decimal
    lock_percent: Decimal


@dataclass(frozen=True, slots=True)
class ExitPlan:
    stop_percent: Decimal | None = None  # the initial stop's distance; None: the guard's default
    breakeven: Breakeven | None = None
    trailing: Trailing | None = None
    ladder: tuple[LadderStep, ...] = ()
    # A reduce-only take-profit at this price, sized to the position (per position: set from
    # /tp or the entry's `tp`; on the tick already). It never moves the stop.
    take_profit: Decimal | None = None

    @property
    def moves(self) -> bool:
        """Whether anything in the plan ever moves the stop (else ticks need no evaluation)."""
        return bool(self.breakeven or self.trailing or self.ladder)


@dataclass(frozen=True, slots=True)
class TrailState:
    """Where one position's exits stand. Persisted before every amend it causes."""

    generation: int
    side: PositionSide
    entry: Decimal
    risk: Decimal | None = None  # 1 R: the distance from entry to the first stop, for at_r
    activated: bool = False
    best_mark: Decimal | None = None  # best mark since the trail activated
    breakeven_done: bool = False
    wanted: Decimal | None = None  # the tightest stop the plan asked for so far (never looser)
    last_amend_at: datetime | None = None
    last_amend_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ExitView:
    """A position's plan and trail state, for /positions."""

    plan: ExitPlan
    activated: bool
    best_mark: Decimal | None
    breakeven_done: bool


def tighter(side: PositionSide, a: Decimal | None, b: Decimal | None) -> Decimal | None:
    """The more protective of two stops (higher for a long, lower for a short)."""
    if a is None:
        return b
    if b is None:
        return a
    if side is PositionSide.LONG:
        return a if a >= b else b
    return a if a <= b else b


def is_tighter(side: PositionSide, new: Decimal, old: Decimal) -> bool:
    return new > old if side is PositionSide.LONG else new < old


def evaluate(plan: ExitPlan, state: TrailState, mark: Decimal) -> TrailState:
    """The state after one mark price. Pure; returns `state` itself when nothing changed."""
    long = state.side is PositionSide.LONG
    entry = state.entry
    activated, best, wanted = state.activated, state.best_mark, state.wanted
    trailing = plan.trailing
    if trailing is not None:
        if activated:
            if best is None or (mark > best if long else mark < best):
                best = mark
        else:
            move = (mark - entry) if long else (entry - mark)
            if move * HUNDRED >= trailing.activation_percent * entry:
                activated, best = True, mark
        if best is not state.best_mark:
            offset = best * trailing.callback_percent / HUNDRED
            wanted = tighter(state.side, wanted, best - offset if long else best + offset)
    breakeven_done = state.breakeven_done
    be = plan.breakeven
    if be is not None and not breakeven_done:
        move = (mark - entry) if long else (entry - mark)
        hit = ((be.at_percent is not None and move * HUNDRED >= be.at_percent * entry)
               or (be.at_r is not None and state.risk is not None and state.risk > 0
                   and move >= be.at_r * state.risk))
        if hit:
            breakeven_done = True
            lock = entry * (be.fee_percent + be.buffer_percent) / HUNDRED
            wanted = tighter(state.side, wanted, entry + lock if long else entry - lock)
    if plan.ladder:
        move_pct = ((mark - entry) if long else (entry - mark)) * HUNDRED / entry
        for step in plan.ladder:
            if move_pct >= step.at_percent:
                lock = entry * step.lock_percent / HUNDRED
                wanted = tighter(state.side, wanted, entry + lock if long else entry - lock)
    if (activated is state.activated and best is state.best_mark and wanted is state.wanted
            and breakeven_done is state.breakeven_done):
        return state
    return replace(state, activated=activated, best_mark=best, wanted=wanted,
                   breakeven_done=breakeven_done)
