"""Texts for exit plans: /trail, /breakeven, /sl, /tp replies and the /positions plan line."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.utils.i18n import gettext as _

from bot import render
from engine.exits.plan import ExitView
from engine.exits.requests import (
    MoveResult,
    MoveStatus,
    PlanResult,
    PlanStatus,
    TakeProfitResult,
    TakeProfitStatus,
)


def plan_line(view: ExitView) -> str | None:
    """One line for /positions: the plan and where the trail stands; None without a plan."""
    plan = view.plan
    parts = []
    if plan.trailing is not None:
        tr = plan.trailing
        if view.activated:
            parts.append(_("trail active: best {best}, {cb} % behind").format(
                best=render.num(view.best_mark), cb=render.num(tr.callback_percent)))
        else:
            parts.append(_("trail inactive: starts at +{at} %, {cb} % behind").format(
                at=render.num(tr.activation_percent), cb=render.num(tr.callback_percent)))
    if plan.breakeven is not None:
        be = plan.breakeven
        at = (_("+{x} %").format(x=render.num(be.at_percent)) if be.at_percent is not None
              else _("{x} R").format(x=render.num(be.at_r)))
        parts.append(_("breakeven done") if view.breakeven_done
                     else _("breakeven at {at}").format(at=at))
    if plan.ladder:
        parts.append(_("ladder {steps}").format(steps=", ".join(
            f"+{render.num(s.at_percent)}→{render.num(s.lock_percent)}" for s in plan.ladder)))
    if plan.take_profit is not None:
        parts.append(_("take-profit {price}").format(price=render.num(plan.take_profit)))
    if not parts:
        return None
    return "  " + " · ".join(parts)


def plan_results(results: Sequence[PlanResult]) -> str:
    lines = []
    for r in results:
        if r.status is PlanStatus.NO_POSITION or r.view is None:
            lines.append(_("{account} · {symbol}: no open position; nothing set.").format(
                account=r.account, symbol=r.symbol))
            continue
        line = plan_line(r.view)
        lines.append(_("{account} · {symbol}: plan set.").format(
            account=r.account, symbol=r.symbol) + (f"\n{line}" if line else
                                                   "\n  " + _("no trailing or breakeven")))
    return "\n".join(lines)


def move_results(results: Sequence[MoveResult]) -> str:
    lines = []
    for r in results:
        head = f"{r.account} · {r.symbol}: "
        match r.status:
            case MoveStatus.MOVED:
                text = _("stop moved {old} → {new}").format(old=render.num(r.old),
                                                            new=render.num(r.new))
            case MoveStatus.UNCHANGED:
                text = _("the stop is already at {new}").format(new=render.num(r.new))
            case MoveStatus.THROUGH_MARK:
                text = _("{new} is through the mark {mark}: refused, nothing changed").format(
                    new=render.num(r.new), mark=render.num(r.mark))
            case MoveStatus.NEEDS_CONFIRM:
                text = _("{new} is looser than the stop {old}: needs Confirm").format(
                    new=render.num(r.new), old=render.num(r.old))
            case MoveStatus.NO_STOP:
                text = _("no stop rests yet (it is being placed); try again shortly")
            case MoveStatus.NO_POSITION:
                text = _("no open position; nothing changed")
            case _:
                text = _("⚠️ the venue did not take the move; the stop {old} still rests"
                         ).format(old=render.num(r.old))
        lines.append(head + text)
    return "\n".join(lines)


def loosen_summary(results: Sequence[MoveResult]) -> str:
    """What a Confirm would do: each stop and the looser price, with the trail turned off."""
    lines = [_("Move the stop further from the price (more risk):")]
    lines.extend(_("• {account} · {symbol}: {old} → {new} (mark {mark})").format(
        account=r.account, symbol=r.symbol, old=render.num(r.old), new=render.num(r.new),
        mark=render.num(r.mark))
        for r in results)
    lines.append(_("Trailing and breakeven end for these positions."))
    return "\n".join(lines)


def take_profit_results(results: Sequence[TakeProfitResult]) -> str:
    lines = []
    for r in results:
        head = f"{r.account} · {r.symbol}: "
        match r.status:
            case TakeProfitStatus.SET:
                text = _("take-profit set at {price} for the whole position (mark {mark})"
                         ).format(price=render.num(r.price), mark=render.num(r.mark))
            case TakeProfitStatus.OFF:
                text = _("take-profit off; ours is cancelled")
            case TakeProfitStatus.THROUGH_MARK:
                text = _("{price} is at or past the mark {mark}: it would fill at once; "
                         "refused, nothing changed").format(price=render.num(r.price),
                                                            mark=render.num(r.mark))
            case TakeProfitStatus.BAD_PRICE:
                text = _("that take-profit is not a price above zero; nothing changed")
            case _:
                text = _("no open position; nothing changed")
        lines.append(head + text)
    return "\n".join(lines)
