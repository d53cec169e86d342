"""/lang en|ru: a user's language, stored per user."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, User
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot.commands import role_flag
from bot.i18n import SUPPORTED
from engine.ports import StateStore


def build_router(state: StateStore) -> Router:
    router = Router(name="language")

    @router.message(Command("lang"), flags=role_flag("lang"))
    async def lang(message: Message, command: CommandObject, event_from_user: User) -> None:
        choice = (command.args or "").strip().lower()
        if choice not in SUPPORTED:
            await message.answer(_("Usage: /lang en|ru"))
            return
        await state.put("lang", str(event_from_user.id), choice)
        with get_i18n().use_locale(choice):
            await message.answer(_("Language set: English."))

    return router
