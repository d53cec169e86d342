"""/long and /short: show exactly what will be sent, then open only after a Confirm tap
(an admin's above the notional threshold). Refusals by a risk gate go back to the requester."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, User
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot import render_entries
from bot.approvals import ApprovalService
from bot.commands import role_flag
from bot.entry_args import EntryArgsError, parse_entry
from engine.control import ControlService
from engine.domain.values import PositionSide
from engine.entries.model import (
    EntryRefused,
    EntryRequest,
    EntrySource,
    Refusal,
)
from engine.errors import Rejected


def build_router() -> Router:
    router = Router(name="entries")

    async def entry(message: Message, command: CommandObject, control: ControlService,
                    approvals: ApprovalService, user: User, side: PositionSide) -> None:
        try:
            args = parse_entry(command.args)
        except EntryArgsError as exc:
            await message.answer(str(exc))
            return
        try:
            [(account, _symbol), *more] = control.resolve(args.symbol)
        except Rejected:
            await message.answer(render_entries.refusal(
                Refusal.BAD_REQUEST, _("unknown symbol {symbol}").format(symbol=args.symbol)))
            return
        if more:  # several accounts trade it: the first is used; say which
            await message.answer(_("Several accounts trade {symbol}; using {account}.").format(
                symbol=args.symbol, account=account))
        limits = control.entries.limits
        request = EntryRequest(
            account=account, symbol=args.symbol, side=side, size=args.size,
            stop=limits.stop_or_default(args.stop),
            key="", source=EntrySource.TELEGRAM, take_profit=args.take_profit,
            by=f"{user.full_name} ({user.id})", limit_price=args.limit_price)
        try:
            plan = await control.preview_entry(request)
        except EntryRefused as exc:
            await message.answer(render_entries.refusal(exc.reason, exc.detail))
            return
        needs_admin = (limits.approval_notional is not None
                       and plan.notional > limits.approval_notional)
        assert message.bot is not None
        await approvals.ask_open(message.bot, chat_id=message.chat.id, user=user,
                                 lang=get_i18n().current_locale, request=request, plan=plan,
                                 needs_admin=needs_admin)

    @router.message(Command("long"), flags=role_flag("long"))
    async def long(message: Message, command: CommandObject, control: ControlService,
                   approvals: ApprovalService, event_from_user: User) -> None:
        await entry(message, command, control, approvals, event_from_user, PositionSide.LONG)

    @router.message(Command("short"), flags=role_flag("short"))
    async def short(message: Message, command: CommandObject, control: ControlService,
                    approvals: ApprovalService, event_from_user: User) -> None:
        await entry(message, command, control, approvals, event_from_user, PositionSide.SHORT)

    return router
