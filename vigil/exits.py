"""`[exits]` settings -> the engine's exit plans and amend limits (one place for the mapping)."""

from __future__ import annotations

from decimal import Decimal

from engine.exits.book import AmendLimits, ExitDefaults
from engine.exits.plan import Breakeven, ExitPlan, LadderStep, Trailing
from vigil.settings import ExitPlanSettings, ExitSettings


def exit_plan(s: ExitPlanSettings) -> ExitPlan:
    breakeven = None
    if s.breakeven_at_percent is not None or s.breakeven_at_r is not None:
        breakeven = Breakeven(at_percent=s.breakeven_at_percent, at_r=s.breakeven_at_r,
                              fee_percent=s.breakeven_fee_percent,
                              buffer_percent=s.breakeven_buffer_percent)
    trailing = None
    if s.trail_activation_percent is not None and s.trail_callback_percent is not None:
        trailing = Trailing(s.trail_activation_percent, s.trail_callback_percent)
    return ExitPlan(stop_percent=s.stop_percent, breakeven=breakeven, trailing=trailing,
                    ladder=tuple(LadderStep(Decimal(a), Decimal(b)) for a, b in s.ladder))


def exit_defaults(s: ExitSettings) -> ExitDefaults:
    return ExitDefaults(exit_plan(s), {sym: exit_plan(p) for sym, p in s.symbols.items()})


def amend_limits(s: ExitSettings) -> AmendLimits:
    return AmendLimits(min_step_percent=s.min_step_percent, min_step_ticks=s.min_step_ticks,
                       min_interval_seconds=s.min_interval_seconds,
                       account_per_minute=s.account_amends_per_minute)
