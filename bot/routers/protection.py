"""/fix_sl [symbol]: reconcile now and say what was found and done."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot import render
from bot.commands import role_flag
from bot.routers.replies import answer_long
from engine.control import ControlService
from engine.errors import Rejected, VenueError


def build_router() -> Router:
    router = Router(name="protection")

    @router.message(Command("fix_sl"), flags=role_flag("fix_sl"))
    async def fix_sl(message: Message, command: CommandObject, control: ControlService) -> None:
        args = (command.args or "").split()
        if len(args) > 1:
            await message.answer(_("Usage: /fix_sl [symbol], e.g. /fix_sl BTCUSDT"))
            return
        try:
            reports = await control.fix_sl(args[0] if args else None)
        except Rejected as exc:
            await message.answer(_("Unknown symbol {symbol}: {reason}").format(
                symbol=render.echo(args[0] if args else ""),
                reason=render.echo(exc.message or exc.reason.value, render.DETAIL_LIMIT)))
            return
        except VenueError as exc:  # its text may quote the symbol typed
            await message.answer(_("The venue did not answer: {error}. Try again shortly."
                                   ).format(error=render.echo(str(exc), render.DETAIL_LIMIT)))
            return
        await answer_long(message, render.fix_report(reports))

    return router
