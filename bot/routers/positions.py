"""/positions [SYMBOL|unprotected]: a summary, then pages turned with Prev / Next in place."""

from __future__ import annotations

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import render
from bot.commands import role_flag
from bot.positions_view import UNPROTECTED_WORD, Only, PositionFilter, PositionsPage, page
from engine.control import ControlService
from engine.errors import Rejected


class BadFilter(Exception):
    """What the user typed after /positions is not a filter; the message says why."""


def usage() -> str:
    return _("Usage: /positions [SYMBOL|unprotected], e.g. /positions BTCUSDT or "
             "/positions unprotected")


def parse_filter(args: str | None, control: ControlService) -> PositionFilter:
    words = (args or "").split()
    if not words:
        return PositionFilter()
    if len(words) > 1:
        raise BadFilter(usage())
    if words[0].lower() == UNPROTECTED_WORD:
        return PositionFilter(Only.UNPROTECTED)
    try:
        found = control.resolve(words[0])
    except Rejected as exc:
        raise BadFilter(_("Unknown symbol {symbol}: {reason}").format(
            symbol=render.echo(words[0]),
            reason=render.echo(exc.message or exc.reason.value, render.DETAIL_LIMIT))
            + "\n" + usage()) from None
    return PositionFilter(Only.SYMBOL, found[0][1])


def build_router() -> Router:
    router = Router(name="positions")

    @router.message(Command("positions"), flags=role_flag("positions"))
    async def positions(message: Message, command: CommandObject,
                        control: ControlService) -> None:
        try:
            flt = parse_filter(command.args, control)
        except BadFilter as exc:
            await message.answer(str(exc))
            return
        shown = page(control.positions(), flt, 0, control.clock.now())
        await message.answer(shown.text, reply_markup=shown.markup)

    @router.callback_query(PositionsPage.filter(), flags=role_flag("positions"))
    async def turn(callback: CallbackQuery, callback_data: PositionsPage,
                   control: ControlService) -> None:
        flt = callback_data.position_filter()
        message = callback.message
        if not isinstance(message, Message) or (
                flt.only is Only.SYMBOL and not _trades(control, flt.symbol)):
            await callback.answer(render.invalid_button(), show_alert=True)
            return
        shown = page(control.positions(), flt, callback_data.page, control.clock.now())
        try:
            await message.edit_text(shown.text, reply_markup=shown.markup)
        except TelegramBadRequest as exc:
            if "not modified" not in exc.message:  # a second tap on an up-to-date page
                raise
        await callback.answer()

    return router


def _trades(control: ControlService, symbol: str) -> bool:
    try:
        return any(found == symbol for _account, found in control.resolve(symbol))
    except Rejected:
        return False
