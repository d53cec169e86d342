"""Texts of entries: what will be sent, what came of it, why a gate refused, and the alerts."""

from __future__ import annotations

from decimal import Decimal

from aiogram.utils.i18n import gettext as _

from bot.render import echo, num, side_label, signed
from engine.domain import events as ev
from engine.entries.model import EntryPlan, EntryResult, EntrySource, EntryStatus, Refusal

CENT = Decimal("0.01")


def source_label(source: str) -> str:
    return {EntrySource.TELEGRAM: _("via Telegram"), EntrySource.WEBHOOK: _("via webhook"),
            EntrySource.API: _("via API")}.get(EntrySource(source), _("by hand"))


def summary(plan: EntryPlan, *, needs_admin: bool) -> str:
    """Exactly what will be sent, after rounding on the venue's lot and tick."""
    lines = [_("Open {side} {symbol} on {account}:").format(
                 side=side_label(plan.side), symbol=plan.symbol, account=plan.account),
             _("  market order for {qty} (≈ {notional} USDT at mark {mark})").format(
                 qty=num(plan.qty), notional=num(plan.notional.quantize(CENT)),
                 mark=num(plan.mark)) if plan.limit_price is None else
             _("  limit order for {qty} at {price} (≈ {notional} USDT; mark {mark}); "
               "what has not filled in {seconds} s is cancelled").format(
                 qty=num(plan.qty), price=num(plan.limit_price),
                 notional=num(plan.notional.quantize(CENT)), mark=num(plan.mark),
                 seconds=f"{plan.limit_timeout:g}"),
             _("  stop-loss {stop} · risk at the stop {risk} USDT").format(
                 stop=num(plan.stop_price), risk=num(plan.risk.quantize(CENT))),
             _("  fees ≈ {fee} USDT (in and out)").format(fee=num(plan.fee_estimate))]
    if plan.take_profit is not None:
        lines.append(_("  take-profit {tp}").format(tp=num(plan.take_profit)))
    lines.append(_("  the stop rides on the entry order") if plan.attached
                 else _("  the stop is placed at the first fill, sized to it"))
    if needs_admin:
        lines.append(_("Over the notional limit: an admin must confirm."))
    return "\n".join(lines)


def refusal(reason: Refusal | None, detail: str) -> str:
    detail = echo(detail)
    text = {
        Refusal.HOLD: _("⛔ Refused: the account is on HOLD ({detail})."),
        Refusal.HALT: _("⛔ Refused: the account is HALTED ({detail})."),
        Refusal.DAILY_LOSS: _("⛔ Refused: the daily loss limit is reached ({detail})."),
        Refusal.MAX_POSITIONS: _("⛔ Refused: at most {detail} open positions."),
        Refusal.POSITION_NOTIONAL: _("⛔ Refused: position notional too large ({detail})."),
        Refusal.ACCOUNT_NOTIONAL: _("⛔ Refused: account notional too large ({detail})."),
        Refusal.LEVERAGE: _("⛔ Refused: leverage too high ({detail})."),
        Refusal.BELOW_MIN: _("⛔ Refused: below the venue's minimum ({detail})."),
        Refusal.STOP_WRONG_SIDE: _("⛔ Refused: the stop is on the wrong side ({detail})."),
        Refusal.TAKE_PROFIT_WRONG_SIDE: _("⛔ Refused: the take-profit is on the wrong side "
                                          "({detail})."),
        Refusal.STOP_TOO_CLOSE: _("⛔ Refused: the stop is too close to the mark ({detail})."),
        Refusal.STOP_TOO_FAR: _("⛔ Refused: the stop is too far from the mark ({detail})."),
        Refusal.COOL_DOWN: _("⛔ Refused: cooling down after a streak of stop-outs "
                             "({detail} s left)."),
        Refusal.POSITION_OPEN: _("⛔ Refused: a position is already open on {detail}; adding "
                                 "to it is not supported (its stop is sized for it). /close "
                                 "it first."),
        Refusal.OPPOSITE_POSITION: _("⛔ Refused: {detail} is open the other way; an entry "
                                     "would close or flip it. Use /close for that."),
        Refusal.DUPLICATE: _("⛔ Refused: duplicate request ({detail})."),
        Refusal.BAD_REQUEST: _("⛔ Refused: {detail}"),
    }.get(reason) if reason is not None else None
    return (text or _("⛔ Refused: {detail}")).format(detail=detail)


def outcome(result: EntryResult) -> str:
    plan = result.plan
    symbol = plan.symbol if plan else ""
    match result.status:
        case EntryStatus.PROTECTED:
            return _("✅ {symbol}: {qty} @ {price} opened; stop {stop} rests "
                     "(time to protect {ttp} s)").format(
                symbol=symbol, qty=num(result.filled_qty), price=num(result.entry_price),
                stop=num(plan.stop_price if plan else None), ttp=num(result.time_to_protect))
        case EntryStatus.ROLLED_BACK:
            return _("↩️ {symbol}: entry rolled back ({detail}); the venue shows it flat, "
                     "PnL {pnl}").format(symbol=symbol, detail=echo(result.detail),
                                         pnl=signed(result.pnl) if result.pnl is not None
                                         else "—")
        case EntryStatus.ROLLBACK_FAILED:
            return _("🚨 {symbol}: rollback FAILED ({detail}); account HALTED").format(
                symbol=symbol, detail=echo(result.detail))
        case EntryStatus.CLOSED:
            return _("{symbol}: filled, then flat before it could be protected; see "
                     "/positions").format(symbol=symbol)
        case EntryStatus.NOT_FILLED:
            return _("Nothing filled: {detail}").format(detail=echo(result.detail))
        case EntryStatus.REFUSED:
            return refusal(result.refusal, result.detail)
    return _("Still in progress; see /positions.")


def cut_outcomes(results: list[EntryResult]) -> str:
    """/close or /close_all of a symbol whose limit entry rested with no position to close."""
    lines = []
    for result in results:
        plan = result.plan
        where = f"{plan.account} · {plan.symbol}" if plan else result.key
        symbol = plan.symbol if plan else ""
        match result.status:
            case EntryStatus.NOT_FILLED:
                lines.append(_("✂️ {where}: the resting limit entry was cancelled (verified "
                               "gone); nothing had filled, so there is no position to close")
                             .format(where=where))
            case EntryStatus.PROTECTED:
                lines.append(_("✂️ {where}: the resting limit entry was cancelled (verified "
                               "gone); {qty} had filled and its stop rests: /close {symbol} "
                               "closes it").format(where=where, qty=num(result.filled_qty),
                                                   symbol=symbol))
            case _:
                lines.append(_("⚠️ {where}: the resting limit entry was cut short: {outcome}")
                             .format(where=where, outcome=outcome(result)))
    return "\n".join(lines)


def alert(e: ev.Event) -> str | None:
    match e:
        case ev.EntryProtected():
            return _("🟢 {symbol}: {side} {qty} @ {entry} opened {source}; stop {stop} rests, "
                     "time to protect {ttp} s").format(
                symbol=e.symbol, side=side_label(e.side), qty=num(e.qty),
                entry=num(e.entry_price), source=source_label(e.source),
                stop=num(e.stop_price), ttp=num(e.time_to_protect))
        case ev.EntryRolledBack():
            return _("🚨 {symbol}: entry ROLLED BACK ({reason}): {qty} closed, the venue shows "
                     "it flat; round trip PnL {pnl}").format(
                symbol=e.symbol, reason=e.reason, qty=num(e.qty), pnl=signed(e.pnl))
        case ev.EntryRollbackFailed():
            return _("🚨 {symbol}: rollback of the entry FAILED ({reason}): {qty} open WITHOUT "
                     "a stop after {n} closes; account HALTED. Act now: /close {symbol}").format(
                symbol=e.symbol, reason=e.reason, qty=num(e.qty), n=e.attempts)
        case ev.EntryRestLeft():
            return _("🚨 {symbol}: account HALTED and the resting limit entry {order} ({side} "
                     "{qty} @ {price}) could not be cancelled ({reason}). Cancel it on the venue "
                     "now: what fills of it gets no new stop until /resume.").format(
                symbol=e.symbol, order=e.order_id, side=side_label(e.side), qty=num(e.qty),
                price=num(e.price), reason=echo(e.reason))
        case ev.SignalsFailing():
            return _("⚠️ webhook source {source}: {n} signals in a row refused before any order "
                     "(last: {reason}). Check its sender, or who is knocking.").format(
                source=echo(e.source), n=e.failures, reason=e.reason)
    return None
