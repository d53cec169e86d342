"""/close SYMBOL, /close_all, /cancel_all: summarised, then done only after a Confirm tap."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message, User
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot import render, render_entries
from bot.approvals import ApprovalCallback, ApprovalService
from bot.commands import role_flag
from bot.roles import Role
from engine.approvals import Decision
from engine.control import CloseTarget, ControlService
from engine.errors import Rejected


def decision_text(decision: str) -> str:
    return {
        Decision.DONE: _("Done."),
        Decision.CANCELLED: _("Cancelled."),
        Decision.NOT_ALLOWED: _("Only the requester or an admin can decide this."),
        Decision.SECOND_ADMIN: _("A second admin must confirm this."),
        Decision.ALREADY: _("Already handled."),
        Decision.EXPIRED: _("Expired: nothing was done."),
        Decision.UNKNOWN: _("Unknown request."),
        Decision.NEEDS_ADMIN: _("Over the notional limit: an admin must confirm this."),
    }[decision]


async def ask_to_close(message: Message, approvals: ApprovalService, user: User,
                       targets: list[CloseTarget]) -> None:
    """Show exactly what will be closed, with Confirm / Cancel; nothing happens before."""
    await approvals.ask_close(message.bot, chat_id=message.chat.id, user=user,
                              lang=get_i18n().current_locale, targets=targets)


async def answer_resting_cuts(message: Message, control: ControlService,
                              symbol_text: str | None, targets: list[CloseTarget]) -> bool:
    """Close means "I want out": a limit entry resting where no position is open yet (nothing
    filled) is cancelled now, without a Confirm (that only reduces exposure), and the reply says
    so; one where a position is open is cut by that position's close. False: nothing to say
    (no position and no such entry)."""
    cuts = await control.cancel_resting_entries(
        symbol_text, skip=frozenset((t.account, t.symbol) for t in targets))
    if cuts:
        await message.answer(render_entries.cut_outcomes(cuts))
    return bool(cuts or targets)


def build_router() -> Router:
    router = Router(name="trading")

    @router.message(Command("close"), flags=role_flag("close"))
    async def close(message: Message, command: CommandObject, control: ControlService,
                    approvals: ApprovalService, event_from_user: User) -> None:
        args = (command.args or "").split()
        if len(args) != 1:
            await message.answer(_("Usage: /close SYMBOL, e.g. /close BTCUSDT"))
            return
        try:
            targets = control.close_targets(args[0])
        except Rejected as exc:
            await message.answer(_("Unknown symbol {symbol}: {reason}").format(
                symbol=render.echo(args[0]),
                reason=render.echo(exc.message or exc.reason.value, render.DETAIL_LIMIT)))
            return
        if not await answer_resting_cuts(message, control, args[0], targets):
            await message.answer(_("No open position on {symbol}; nothing to close.").format(
                symbol=render.echo(args[0].upper())))
        if targets:
            await ask_to_close(message, approvals, event_from_user, targets)

    @router.message(Command("close_all"), flags=role_flag("close_all"))
    async def close_all(message: Message, command: CommandObject, control: ControlService,
                        approvals: ApprovalService, event_from_user: User) -> None:
        if command.args:
            await message.answer(_("Usage: /close_all"))
            return
        targets = control.close_targets(None)
        if not await answer_resting_cuts(message, control, None, targets):
            await message.answer(_("No open positions; nothing to close."))
        if targets:
            await ask_to_close(message, approvals, event_from_user, targets)

    @router.message(Command("cancel_all"), flags=role_flag("cancel_all"))
    async def cancel_all(message: Message, command: CommandObject, control: ControlService,
                         approvals: ApprovalService, event_from_user: User) -> None:
        if command.args:
            await message.answer(_("Usage: /cancel_all"))
            return
        targets = await control.cancel_targets()
        if not targets:
            await message.answer(_("No orders to cancel (protective stops are never "
                                   "cancelled)."))
            return
        await approvals.ask_cancel(message.bot, chat_id=message.chat.id, user=event_from_user,
                                   lang=get_i18n().current_locale, targets=targets)

    @router.callback_query(ApprovalCallback.filter())
    async def decide(callback: CallbackQuery, callback_data: ApprovalCallback,
                     approvals: ApprovalService, role: Role) -> None:
        assert callback.bot is not None
        decision = await approvals.decide(callback.bot, callback_data.id, yes=callback_data.yes,
                                          user=callback.from_user, role=role)
        await callback.answer(decision_text(decision),
                              show_alert=decision not in (Decision.DONE, Decision.CANCELLED))

    return router
