"""Plain-text renderings of engine results and events, every word through gettext."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from bot.l10n import gettext as _
from bot.l10n import ngettext
from bot.roles import Role
from engine.control import (
    CancelOutcome,
    CancelSkip,
    CloseOutcome,
    CloseStatus,
    CloseTarget,
    EngineStatus,
    OrderTarget,
    PositionView,
    ReconcileReport,
)
from engine.domain import events as ev
from engine.domain.values import PositionSide

NAME_LIMIT = 32  # characters of a user-supplied name shown to anyone
ECHO_LIMIT = 40  # characters of user input quoted back in a reply (a symbol, an argument)
DETAIL_LIMIT = 300  # characters of an error detail that may quote user input
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})  # controls, bidi, zero-width


def clean(text: str, limit: int) -> str:
    """User-supplied text made harmless to show: control, bidirectional and zero-width
    characters removed (they can reorder or hide what follows), runs of whitespace made one
    space, cut to `limit` characters with an ellipsis."""
    visible = "".join(" " if ch.isspace() else ch for ch in text
                      if unicodedata.category(ch) not in _INVISIBLE or ch in "\t\n\r")
    visible = " ".join(visible.split())
    return visible if len(visible) <= limit else visible[:limit - 1] + "…"


def escape(text: str, parse_mode: str | None = None) -> str:
    """Escape text for the message's parse mode (plain text needs nothing)."""
    from aiogram.enums import ParseMode  # here: `vigil check` renders without aiogram
    from aiogram.utils.text_decorations import html_decoration, markdown_decoration

    if parse_mode == ParseMode.HTML:
        return html_decoration.quote(text)
    if parse_mode == ParseMode.MARKDOWN_V2:
        return markdown_decoration.quote(text)
    return text


def safe_name(name: str, parse_mode: str | None = None) -> str:
    """A user's name in quotes, cleaned, truncated and escaped: it reads as a name, never as
    Vigil's own words, and it cannot break the markup around it."""
    return escape(f"“{clean(name, NAME_LIMIT) or '?'}”", parse_mode)


def shown_user(name: str, user_id: int, parse_mode: str | None = None) -> str:
    """A user as shown to admins: always with the numeric id, the only thing that identifies
    them."""
    return _("{name} (id {id})").format(name=safe_name(name, parse_mode), id=user_id)


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """User input quoted back in a reply, bounded: what a user typed never makes a reply
    longer than Telegram accepts."""
    return clean(text, limit)


def side_label(side: PositionSide | str) -> str:
    return _("LONG") if PositionSide(side) is PositionSide.LONG else _("SHORT")


def role_label(role: Role) -> str:
    return {Role.VIEWER: _("viewer"), Role.TRADER: _("trader"), Role.ADMIN: _("admin")}[role]


def num(value: Decimal | None) -> str:
    if value is None:
        return "—"
    text = format(value.normalize(), "f")
    return text


def signed(value: Decimal) -> str:
    return ("+" if value > 0 else "") + num(value.quantize(Decimal("0.01")))


def weight(value: float) -> str:
    """Request weight: ccxt costs are mostly whole, a few are fractions (Bitget 0.5...)."""
    return f"{value:.1f}".removesuffix(".0")


def hhmmss(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S UTC") if value else "—"


def status(s: EngineStatus) -> str:
    mode = _("paper") if s.mode == "paper" else _("live")
    lines = [_("Vigil · {mode} mode").format(mode=mode)]
    if s.chaos:
        lines.append(_("🧪 Chaos profile {profile}: venue faults injected on purpose").format(
            profile=s.chaos))
    if s.hold:
        lines.append(_("⏸ HOLD: {reason} (by {by})").format(reason=s.hold.reason, by=s.hold.by))
    else:
        lines.append(_("▶️ Trading allowed (no HOLD)"))
    lines.append(_("Positions: {n} · unprotected: {u}").format(n=s.positions, u=s.unprotected))
    for a in s.accounts:
        venue = a.venue + (" testnet" if a.testnet and a.venue != "sim" else "")
        lines.append("")
        lines.append(_("Account {name} ({venue})").format(name=a.name, venue=venue))
        if a.halted:
            lines.append(_("  ⛔ HALTED: {reason}").format(reason=a.halted))
        if a.hold:
            lines.append(_("  ⏸ HOLD: {reason}").format(reason=a.hold.reason))
        stream = _("stream up") if a.stream_up else _("stream down: {why}").format(
            why=a.stream_note or "—")
        amend = _("amend in place") if a.amend_in_place else _("replace (new before old)")
        lines.append(f"  {stream} · {amend}")
        lines.append(_("  positions {n} · unprotected {u} · last time-to-protect {ttp}").format(
            n=a.positions, u=a.unprotected,
            ttp=_("{s} s").format(s=num(a.last_time_to_protect))
            if a.last_time_to_protect is not None else "—"))
        if a.weight is not None:
            lines.append(_("  request weight: {cycle} per guard cycle · {used} of {limit} used "
                           "per {window} s").format(
                cycle=weight(a.weight.per_cycle), used=weight(a.weight.used),
                limit=weight(a.weight.limit), window=weight(a.weight.window_seconds)))
        lines.append(_("  last check {at}").format(at=hhmmss(a.last_reconcile)))
        if a.last_error:
            lines.append(_("  ⚠️ venue error: {error}").format(error=a.last_error))
    return "\n".join(lines)


def positions(views: Sequence[PositionView]) -> str:
    if not views:
        return _("No open positions.")
    return "\n".join(position(p) for p in views)


def position(p: PositionView) -> str:
    """One position, two lines: what it is, then its mark, PnL and stop (a column more goes
    here, for /positions and every place that shows a position)."""
    from bot.render_entries import source_label  # it builds on this module's helpers
    head = (f"{p.account} · {p.symbol} · {side_label(p.side)} {num(p.qty)} "
            f"@ {num(p.entry_price)} · {source_label(p.source)}")
    if p.stop_price is not None and p.whole_position_stop:
        stop = _("stop {price} (whole position)").format(price=num(p.stop_price))
    elif p.stop_price is not None:
        stop = _("stop {price}").format(price=num(p.stop_price))
    else:
        stop = _("NO STOP ({s} s)").format(s=int(p.unprotected_seconds))
    text = head + "\n" + _("  mark {mark} · PnL {pnl} · {stop}").format(
        mark=num(p.mark_price), pnl=signed(p.unrealized_pnl), stop=stop)
    if p.exit is not None:
        from bot import exits_text  # it builds on this module's helpers
        if line := exits_text.plan_line(p.exit):
            text += "\n" + line
    return text


def invalid_button() -> str:
    """The answer to a button whose data we do not recognise (forged, or left by an older
    version): nothing is done."""
    return _("⚠️ This button is not valid here (or its alert is too old); nothing was done.")


def fix_report(reports: Sequence[ReconcileReport]) -> str:
    lines = []
    for r in reports:
        checked = ngettext("{n} position checked", "{n} positions checked",
                           r.positions).format(n=r.positions)
        lines.append(_("Account {name}: {checked}, {u} without a stop").format(
            name=r.account, checked=checked, u=len(r.unprotected_before)))
        if r.error:
            lines.append(_("  ⚠️ not checked: {error}").format(error=r.error))
            continue
        done = [text for e in r.events if (text := event(e, brief=True))]
        lines.extend(f"  • {text}" for text in done)
        if not done:
            lines.append(_("  • nothing to fix"))
        if r.unprotected_after:
            lines.append(_("  ⚠️ still without a stop: {symbols}").format(
                symbols=", ".join(r.unprotected_after)))
    return "\n".join(lines) if lines else _("No accounts matched.")


def event(e: ev.Event, *, brief: bool = False) -> str | None:
    """The alert text for an event, or None when the event is journal-only."""
    head = "" if brief else f"[{e.account}] "
    match e:
        case ev.StopPlaced(time_to_protect=ttp) if ttp is not None:
            return head + _("🛡 {symbol}: had no stop; placed at {price} for {qty} "
                            "in {ttp} s").format(symbol=e.symbol, price=num(e.trigger_price),
                                                 qty=num(e.qty), ttp=num(ttp))
        case ev.StopPlaced():
            return head + _("🔁 {symbol}: stop replaced at {price} for {qty}").format(
                symbol=e.symbol, price=num(e.trigger_price), qty=num(e.qty)) if brief else None
        case ev.StopAmended():
            return head + _("🔁 {symbol}: stop resized to {qty}").format(
                symbol=e.symbol, qty=num(e.qty)) if brief else None
        case ev.StopMoved():
            return head + (_("🔒 {symbol}: stop moved {old} → {new}").format(
                symbol=e.symbol, old=num(e.old_price), new=num(e.new_price)) if brief else
                _("🔒 {symbol}: stop moved; /positions shows where").format(symbol=e.symbol))
        case ev.StopMoveFailed():
            return head + _("🚨 {symbol}: the venue did not take the stop move to {new} "
                            "({reason} {message}); the stop still rests at {old}. Vigil tries "
                            "again; check /positions.").format(
                symbol=e.symbol, new=num(e.new_price), reason=e.reason, message=e.message,
                old=num(e.old_price))
        case ev.StopCancelled(reason="duplicate"):
            return head + _("🧹 {symbol}: extra stop {order} cancelled").format(
                symbol=e.symbol, order=e.order_id)
        case ev.StopCancelled():
            return None
        case ev.PositionAdopted() if e.entry:
            return None  # our own entry: its "filled and protected" alert says it
        case ev.PositionAdopted():
            return head + _("👀 {symbol}: {side} {qty} @ {entry} found on the venue; "
                            "now guarded").format(symbol=e.symbol, side=side_label(e.side),
                                                  qty=num(e.qty), entry=num(e.entry_price))
        case ev.PositionResized():
            return head + _("↕️ {symbol}: size {old} → {new}").format(
                symbol=e.symbol, old=num(e.old_qty), new=num(e.new_qty))
        case ev.PositionClosed(reason=ev.CloseReason.TAKE_PROFIT):
            return head + _("🎯 {symbol}: take-profit hit: {side} {qty} closed at {price}, "
                            "PnL {pnl}").format(
                symbol=e.symbol, side=side_label(e.side), qty=num(e.qty),
                price=num(e.exit_price), pnl=signed(e.realized_pnl)
                if e.realized_pnl is not None else "—")
        case ev.PositionClosed():
            return head + _("✅ {symbol}: {side} {qty} closed at {price}, PnL {pnl}").format(
                symbol=e.symbol, side=side_label(e.side), qty=num(e.qty),
                price=num(e.exit_price), pnl=signed(e.realized_pnl)
                if e.realized_pnl is not None else "—")
        case ev.StopCrossed(action="close"):
            return head + _("🚨 {symbol}: stop {stop} is already through the mark {mark}; "
                            "closing the position").format(symbol=e.symbol,
                                                           stop=num(e.stop_price),
                                                           mark=num(e.mark_price))
        case ev.StopCrossed():
            return head + _("🚨 {symbol}: stop {stop} is already through the mark {mark}; "
                            "tightened next to the mark").format(symbol=e.symbol,
                                                                 stop=num(e.stop_price),
                                                                 mark=num(e.mark_price))
        case ev.CloseSubmitted():
            return head + _("📤 {symbol}: reduce-only close for {qty} sent").format(
                symbol=e.symbol, qty=num(e.qty))
        case ev.ExitPlanDropped() if e.take_profit is not None or e.trailing or e.breakeven:
            return head + _("ℹ️ {symbol}: the exit plan ({plan}) of an earlier position was "
                            "dropped: that position is gone (closed or re-opened while Vigil "
                            "was stopped). Set /trail or /tp again for the position open now."
                            ).format(symbol=e.symbol, plan=_plan_parts(e))
        case ev.CloseSideGone():
            return head + _("⚠️ {symbol}: the close of the {side} {qty} did not run: it is not on "
                            "the venue and the position was reversed there, it is {now} now. "
                            "Vigil guards the new position; nothing of it was closed.").format(
                symbol=e.symbol, side=side_label(e.side), qty=num(e.qty),
                now=side_label(e.now))
        case ev.ZombieCancelled():
            return head + _("🧟 {symbol}: orphaned {kind} order {order} cancelled "
                            "(no position)").format(symbol=e.symbol, kind=e.order_kind,
                                                   order=e.order_id)
        case ev.SlaBreached():
            return head + _("🚨 {symbol}: NO STOP for {s} s (over the SLA)").format(
                symbol=e.symbol, s=num(e.unprotected_seconds))
        case ev.StopCannotRest():
            return head + _("🚨 {symbol}: the venue keeps refusing the stop ({reason} {message}); "
                            "the position is NOT protected. Act now: /close {symbol} or fix the "
                            "cause. Vigil tries again in {s} s or when the position changes."
                            ).format(symbol=e.symbol, reason=e.reason, message=e.message,
                                     s=num(e.retry_in_seconds))
        case ev.StopRejected():
            return head + _("⚠️ {symbol}: venue rejected the stop: {reason} {message}").format(
                symbol=e.symbol, reason=e.reason, message=e.message)
        case ev.TakeProfitRejected():
            return head + _("⚠️ {symbol}: venue rejected the take-profit at {price}: {reason} "
                            "{message}; the stop is unaffected").format(
                symbol=e.symbol, price=num(e.trigger_price), reason=e.reason,
                message=e.message)
        case ev.LossLimitHit():
            return head + _("🛑 daily loss limit {limit} reached (PnL today {pnl}): account on "
                            "HOLD; stops stay. /resume asks for a confirmation.").format(
                limit=num(e.limit), pnl=signed(e.pnl))
        case ev.AccountHalted():
            return head + _("⛔ account HALTED: {reason}. A person must act; /resume after "
                            "fixing it.").format(reason=e.reason)
        case ev.VenueFailure():
            return head + _("⚠️ venue error in {op}: {error} {message}").format(
                op=e.operation, error=e.error, message=e.message)
        case ev.HoldSet():
            return head + _("⏸ HOLD by {by}: {reason}. Protection goes on.").format(
                by=e.by, reason=e.reason)
        case ev.HoldReleased():
            return head + _("▶️ HOLD lifted by {by}").format(by=e.by)
        case ev.StreamChanged(up=False):
            return head + _("📡 stream down ({reason}); REST checks carry protection").format(
                reason=e.reason or "—")
        case ev.EngineStarted():
            return head + _("Vigil started ({mode} mode)").format(mode=e.mode)
        case (ev.EntryProtected() | ev.EntryRolledBack() | ev.EntryRollbackFailed()
              | ev.EntryRestLeft() | ev.SignalsFailing()):
            from bot import render_entries  # it builds on this module's helpers
            text = render_entries.alert(e)
            return head + text if text else None
    return None


def _plan_parts(e: ev.ExitPlanDropped) -> str:
    parts = []
    if e.trailing:
        parts.append(_("trailing"))
    if e.breakeven:
        parts.append(_("breakeven"))
    if e.take_profit is not None:
        parts.append(_("take-profit {price}").format(price=num(e.take_profit)))
    return ", ".join(parts)


# --- approvals --------------------------------------------------------------------------------
def close_summary(targets: Sequence[CloseTarget]) -> str:
    lines = [_("Close with reduce-only market orders:")]
    for t in targets:
        lines.append(_("• {account} · {symbol} · {side} {qty} (mark {mark}, PnL {pnl})").format(
            account=t.account, symbol=t.symbol, side=side_label(t.side), qty=num(t.qty),
            mark=num(t.mark_price), pnl=signed(t.unrealized_pnl)))
    lines.append(_("Each stop stays until its position is flat."))
    return "\n".join(lines)


def cancel_summary(targets: Sequence[OrderTarget]) -> str:
    lines = [_("Cancel these orders (protective stops are kept):")]
    for t in targets:
        lines.append(_("• {account} · {symbol} · {kind} {side} {qty} @ {price} (id {id})").format(
            account=t.account, symbol=t.symbol, kind=t.kind, side=t.side, qty=num(t.qty),
            price=num(t.price), id=t.order_id))
    return "\n".join(lines)


def close_outcomes(outcomes: Sequence[CloseOutcome]) -> str:
    lines = []
    for o in outcomes:
        where = f"{o.account} · {o.symbol}"
        if o.entry_cut:
            lines.append(_("✂️ {where}: the unfilled rest of the limit entry was cancelled "
                           "first (verified gone)").format(where=where))
        match o.status:
            case CloseStatus.CLOSED:
                lines.append(_("✅ {where}: closed {qty} at {price}, PnL {pnl}; stop cancelled "
                               "after flat").format(
                    where=where, qty=num(o.qty), price=num(o.exit_price),
                    pnl=signed(o.realized_pnl) if o.realized_pnl is not None else "—"))
            case CloseStatus.SUBMITTED:
                lines.append(_("📤 {where}: close for {qty} sent; the stop stays until the venue "
                               "shows it flat").format(where=where, qty=num(o.qty)))
            case CloseStatus.CHANGED:
                lines.append(_("— {where}: the position is {side} now; not closed").format(
                    where=where, side=side_label(o.detail)))
            case CloseStatus.IN_PROGRESS:
                lines.append(_("⏳ {where}: a close is already in flight").format(where=where))
            case CloseStatus.ALREADY_FLAT:
                lines.append(_("— {where}: already flat, nothing to do").format(where=where))
            case CloseStatus.FAILED:
                lines.append(_("❌ {where}: failed: {detail}").format(where=where,
                                                                      detail=o.detail))
    return "\n".join(lines)


def cancel_outcomes(outcomes: Sequence[CancelOutcome]) -> str:
    lines = []
    for o in outcomes:
        where = f"{o.target.account} · {o.target.symbol} · {o.target.order_id}"
        if o.cancelled:
            lines.append(_("✅ {where}: cancelled").format(where=where))
        else:
            detail = {CancelSkip.GONE: _("already gone"),
                      CancelSkip.PROTECTS: _("it protects a position now; kept")}.get(
                o.detail, o.detail)
            lines.append(_("— {where}: not cancelled ({detail})").format(where=where,
                                                                      detail=detail))
    return "\n".join(lines)
