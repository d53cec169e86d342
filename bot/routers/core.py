"""/start, /help, and the answer to anything we do not understand."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.commands import COMMANDS, role_flag
from bot.render import invalid_button, role_label
from bot.roles import Role


def build_router() -> Router:
    router = Router(name="core")

    @router.message(CommandStart(), flags=role_flag("start"))
    async def start(message: Message, role: Role) -> None:
        await message.answer(_("Vigil keeps every position under a stop-loss.\n"
                               "Your role: {role}. /help lists what you can do.").format(
            role=role_label(role)))

    @router.message(Command("help"), flags=role_flag("help"))
    async def help_(message: Message, role: Role) -> None:
        lines = [_("Commands for your role ({role}):").format(role=role_label(role))]
        lines += [f"{c.usage} — {c.help}" for c in COMMANDS if role >= c.role]
        await message.answer("\n".join(lines))

    return router


def build_fallback_router() -> Router:
    """Included last: unknown commands get a pointer to /help instead of silence, unknown
    buttons an error."""
    router = Router(name="fallback")

    @router.message(F.text.startswith("/"))
    async def unknown(message: Message) -> None:
        await message.answer(_("Unknown command. /help lists what you can do."))

    @router.callback_query()
    async def unknown_button(callback: CallbackQuery) -> None:
        """Button data no handler accepted (forged, malformed, or from an older version):
        answered, so the client stops spinning, and nothing is done."""
        await callback.answer(invalid_button(), show_alert=True)

    return router
