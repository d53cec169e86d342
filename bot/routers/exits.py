"""/trail, /breakeven, /sl, /tp: a position's exit plan and its stop, by hand (trader and up).

A tighter stop is moved at once; a looser one (more risk) only after a Confirm tap. A
take-profit at or past the mark is refused (it would fill at once)."""

from __future__ import annotations

from collections.abc import Awaitable
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, User
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot import exits_text, render
from bot.approvals import ApprovalService
from bot.commands import role_flag
from engine.control import ControlService
from engine.domain.values import HUNDRED
from engine.entries.model import PriceKind, PriceSpec
from engine.entries.words import BadNumber, parse_price
from engine.errors import Rejected
from engine.exits.plan import Breakeven, Trailing
from engine.exits.requests import MoveStatus

T = TypeVar("T")
DEFAULT_ACTIVATION = Decimal(1)  # % in favour before the trail starts, when not given
DEFAULT_CALLBACK = Decimal("0.5")  # % behind the best mark, when not given
DEFAULT_BREAKEVEN = Decimal(1)  # % in favour before the stop goes to breakeven


def number(text: str) -> Decimal:
    """A finite decimal as typed; anything else raises ValueError."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not value.is_finite():
        raise ValueError(text)
    return value


def percent(text: str) -> Decimal:
    """`1.5` or `1.5%` -> Decimal("1.5")."""
    return number(text.removesuffix("%"))


def price_spec(text: str) -> PriceSpec:
    """`65000` (a price) or `1.5%` (that far from the mark), as an entry reads its sl and tp;
    a percent below 100. Raises ValueError."""
    try:
        spec = parse_price(text)
    except BadNumber:
        raise ValueError(text) from None
    if spec.kind is PriceKind.PERCENT and spec.value >= HUNDRED:
        raise ValueError(text)
    return spec


async def for_symbol(message: Message, text: str, request: Awaitable[T]) -> T | None:
    """The control's answer, or None after saying the symbol is unknown (nothing changed)."""
    try:
        return await request
    except Rejected as exc:
        await message.answer(_("Unknown symbol {symbol}: {reason}").format(
            symbol=render.echo(text),
            reason=render.echo(exc.message or exc.reason.value, render.DETAIL_LIMIT)))
        return None


def build_router() -> Router:
    router = Router(name="exits")

    @router.message(Command("trail"), flags=role_flag("trail"))
    async def trail(message: Message, command: CommandObject, control: ControlService) -> None:
        args = (command.args or "").split()
        usage = _("Usage: /trail SYMBOL [activation%] [callback%], e.g. /trail BTCUSDT 1.5 0.8; "
                  "/trail SYMBOL off")
        if not 1 <= len(args) <= 3:
            await message.answer(usage)
            return
        trailing: Trailing | None = None
        if args[1:] != ["off"]:
            try:
                activation = percent(args[1]) if len(args) > 1 else DEFAULT_ACTIVATION
                callback = percent(args[2]) if len(args) > 2 else DEFAULT_CALLBACK
                trailing = Trailing(activation, callback)
            except ValueError:
                await message.answer(usage + "\n" + _(
                    "Activation is 0 % or more, the callback between 0 % and 100 %."))
                return
        plans = await for_symbol(message, args[0], control.set_trailing(args[0], trailing))
        if plans is not None:
            await message.answer(exits_text.plan_results(plans))

    @router.message(Command("breakeven"), flags=role_flag("breakeven"))
    async def breakeven(message: Message, command: CommandObject,
                        control: ControlService) -> None:
        args = (command.args or "").split()
        usage = _("Usage: /breakeven SYMBOL [at X%], e.g. /breakeven BTCUSDT at 1.2%")
        if len(args) == 3 and args[1] == "at":
            args = [args[0], args[2]]
        if not 1 <= len(args) <= 2:
            await message.answer(usage)
            return
        try:
            at = percent(args[1]) if len(args) == 2 else DEFAULT_BREAKEVEN
            if not Decimal(0) < at < Decimal(100):
                raise ValueError(args[1])
        except ValueError:
            await message.answer(usage)
            return
        plans = await for_symbol(message, args[0],
                                 control.set_breakeven(args[0], Breakeven(at_percent=at)))
        if plans is not None:
            await message.answer(exits_text.plan_results(plans))

    @router.message(Command("sl"), flags=role_flag("sl"))
    async def sl(message: Message, command: CommandObject, control: ControlService,
                 approvals: ApprovalService, event_from_user: User) -> None:
        args = (command.args or "").split()
        usage = _("Usage: /sl SYMBOL PRICE|PCT%, e.g. /sl BTCUSDT 64000 or /sl BTCUSDT 1.5%")
        if len(args) != 2:
            await message.answer(usage)
            return
        try:
            spec = price_spec(args[1])
        except ValueError:
            await message.answer(usage)
            return
        results = await for_symbol(message, args[0], control.move_stop(args[0], spec))
        if results is None:
            return
        await message.answer(exits_text.move_results(results))
        looser = [r for r in results if r.status is MoveStatus.NEEDS_CONFIRM]
        if looser:
            await approvals.ask_stop_moves(message.bot, chat_id=message.chat.id,
                                           user=event_from_user,
                                           lang=get_i18n().current_locale, moves=looser)

    @router.message(Command("tp"), flags=role_flag("tp"))
    async def tp(message: Message, command: CommandObject, control: ControlService) -> None:
        args = (command.args or "").split()
        usage = _("Usage: /tp SYMBOL PRICE|PCT%, e.g. /tp BTCUSDT 70000 or /tp BTCUSDT 3%; "
                  "/tp SYMBOL off")
        if len(args) != 2:
            await message.answer(usage)
            return
        spec: PriceSpec | None = None
        if args[1].lower() != "off":
            try:
                spec = price_spec(args[1])
            except ValueError:
                await message.answer(usage)
                return
        results = await for_symbol(message, args[0], control.set_take_profit(args[0], spec))
        if results is not None:
            await message.answer(exits_text.take_profit_results(results))

    return router
