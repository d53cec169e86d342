"""/pnl [days]: realized PnL, fees, funding and unrealized per account and symbol, with a chart
of the last 30 days (more when more days are asked for)."""

from __future__ import annotations

from contextlib import suppress

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.i18n import gettext as _

from bot.commands import role_flag
from bot.reports import account_chart, caption, report_text
from bot.routers.replies import answer_long
from engine.control import MAX_REPORT_DAYS, ControlService


def parse_days(args: str | None) -> int | None:
    """`/pnl` -> 1, `/pnl 7` -> 7; None for anything else or out of 1..MAX_REPORT_DAYS."""
    text = (args or "").strip()
    if not text:
        return 1
    if not text.isdigit() or not text.isascii():
        return None
    days = int(text)
    return days if 1 <= days <= MAX_REPORT_DAYS else None


def build_router() -> Router:
    router = Router(name="pnl")

    @router.message(Command("pnl"), flags=role_flag("pnl"))
    async def pnl(message: Message, command: CommandObject,
                  control: ControlService) -> None:
        days = parse_days(command.args)
        if days is None:
            await message.answer(_("Usage: /pnl [days], days from 1 to {max}").format(
                max=MAX_REPORT_DAYS))
            return
        report = await control.pnl(days)
        await answer_long(message, report_text(report))
        for account in report.accounts:
            png = await account_chart(account)
            with suppress(NotImplementedError):  # the console chat shows no pictures
                await message.answer_photo(BufferedInputFile(png, "pnl.png"),
                                           caption=caption(report, account))

    return router
