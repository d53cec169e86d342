"""/hold [reason] and /resume (admins): block and allow new entries; protection never stops."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, User
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot.approvals import ApprovalService
from bot.commands import role_flag
from engine.control import ControlService

MAX_REASON = 200


def build_router() -> Router:
    router = Router(name="hold")

    @router.message(Command("hold"), flags=role_flag("hold"))
    async def hold(message: Message, command: CommandObject, control: ControlService,
                   actor: str) -> None:
        reason = (command.args or "").strip() or _("manual hold")
        if len(reason) > MAX_REASON:
            await message.answer(_("Usage: /hold [reason] (at most {n} characters)").format(
                n=MAX_REASON))
            return
        result = await control.hold(reason, actor)
        if result.changed:
            await message.answer(_("⏸ HOLD is on: {reason}. New entries are blocked; stops "
                                   "stay and protection goes on.").format(reason=reason))
        else:
            assert result.hold is not None
            await message.answer(_("Already on HOLD since {since}: {reason}").format(
                since=result.hold.since[:19].replace("T", " "), reason=result.hold.reason))

    @router.message(Command("resume"), flags=role_flag("resume"))
    async def resume(message: Message, command: CommandObject, control: ControlService,
                     approvals: ApprovalService, actor: str, event_from_user: User) -> None:
        if command.args:
            await message.answer(_("Usage: /resume"))
            return
        hold = control.hold_state
        if control.resume_needs_approval and hold is not None:
            # The daily loss limit stopped trading: lifting it is a risky action.
            await approvals.ask_resume(message.bot, chat_id=message.chat.id,
                                       user=event_from_user, lang=get_i18n().current_locale,
                                       reason=hold.reason)
            return
        result = await control.resume(actor)
        await message.answer(_("▶️ HOLD lifted: new entries are allowed.") if result.changed
                             else _("Not on HOLD; nothing to resume."))

    return router
