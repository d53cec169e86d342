"""Alerts you can act on: an alert about one position (found on the venue, over the SLA, a stop
the venue refuses) carries [Close] [Fix now] [Positions].

The button spec (`AlertButtons`) is stored with the alert in the outbox; the callback data names
only the outbox row and the action (`al:<row>:<action>`, well under Telegram's 64 bytes), so it
cannot be forged into another position: the tap is checked against the stored row (it exists, it
was sent to this chat, it offers this action). Each action needs the role of its command, and
does what the command does: [Close] asks for the usual approval (pinned to the alert's
generation of the position), [Fix now] runs /fix_sl for the symbol, [Positions] shows it.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiogram import F, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot import render
from bot.approvals import ApprovalService
from bot.commands import role_flag
from bot.routers.replies import answer_long
from engine.control import ControlService
from engine.domain import events as ev
from engine.errors import Rejected, VenueError
from engine.outbox import AlertAction, AlertButtons, Outbox

ALL_ACTIONS = (AlertAction.CLOSE, AlertAction.FIX, AlertAction.POSITIONS)
# Alerts with buttons in one message, a keyboard row each: a storm of them still goes out a few
# messages at a time, well inside Telegram's 100 buttons a message.
MAX_PER_MESSAGE = 10


class AlertCallback(CallbackData, prefix="al"):
    row: int  # the outbox row the alert was sent from
    do: AlertAction


def buttons_for(event: ev.Event) -> AlertButtons | None:
    """The buttons an event's alert carries (None: a plain alert)."""
    match event:
        case ev.PositionAdopted() | ev.SlaBreached() | ev.StopCannotRest():
            return AlertButtons(event.account, event.symbol, event.generation, ALL_ACTIONS)
    return None


def keyboard(alerts: Sequence[tuple[int, AlertButtons]]) -> InlineKeyboardMarkup | None:
    """A row of buttons per alert (outbox row id, its buttons), labelled in the current locale;
    with several alerts in one message, each row names its market."""
    labels = {AlertAction.CLOSE: _("✖️ Close"), AlertAction.FIX: _("🛡 Fix now"),
              AlertAction.POSITIONS: _("📋 Positions")}
    rows = []
    for row_id, buttons in alerts:
        row = []
        for n, action in enumerate(buttons.actions):
            label = labels[action]
            if n == 0 and len(alerts) > 1:
                label = f"{label} · {buttons.symbol}"
            row.append(InlineKeyboardButton(
                text=label, callback_data=AlertCallback(row=row_id, do=action).pack()))
        rows.append(row)
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


async def _spec(callback: CallbackQuery, data: AlertCallback,
                alert_outbox: Outbox) -> tuple[Message, AlertButtons] | None:
    """The stored buttons this tap refers to, if the tap is genuine: the row exists, was sent
    to the chat the tap came from, and offers the action. Otherwise answered with an error."""
    message = callback.message
    row = await alert_outbox.get(data.row) if isinstance(message, Message) else None
    if (row is None or not isinstance(message, Message) or row.chat_id != message.chat.id
            or row.buttons is None or data.do not in row.buttons.actions):
        await callback.answer(render.invalid_button(), show_alert=True)
        return None
    return message, row.buttons


def build_router() -> Router:
    router = Router(name="alert_buttons")

    @router.callback_query(AlertCallback.filter(F.do == AlertAction.CLOSE),
                           flags=role_flag("close"))
    async def close(callback: CallbackQuery, callback_data: AlertCallback, alert_outbox: Outbox,
                    control: ControlService, approvals: ApprovalService) -> None:
        found = await _spec(callback, callback_data, alert_outbox)
        if found is None:
            return
        message, spec = found
        try:
            targets = [t for t in control.close_targets(spec.symbol)
                       if t.account == spec.account]
        except Rejected:
            targets = []
        if not targets:
            await callback.answer(_("No open position on {symbol}; nothing to close.").format(
                symbol=spec.symbol), show_alert=True)
            return
        if spec.generation is not None and targets[0].generation != spec.generation:
            await callback.answer(_("{symbol} changed since this alert; nothing was done. See "
                                    "/positions.").format(symbol=spec.symbol), show_alert=True)
            return
        await callback.answer()
        assert message.bot is not None
        await approvals.ask_close(message.bot, chat_id=message.chat.id, user=callback.from_user,
                                  lang=get_i18n().current_locale, targets=targets)

    @router.callback_query(AlertCallback.filter(F.do == AlertAction.FIX),
                           flags=role_flag("fix_sl"))
    async def fix(callback: CallbackQuery, callback_data: AlertCallback, alert_outbox: Outbox,
                  control: ControlService) -> None:
        found = await _spec(callback, callback_data, alert_outbox)
        if found is None:
            return
        message, spec = found
        await callback.answer()
        try:
            reports = await control.fix_sl(spec.symbol)  # what /fix_sl SYMBOL does
        except (Rejected, VenueError) as exc:
            await message.answer(_("The venue did not answer: {error}. Try again shortly."
                                   ).format(error=render.echo(str(exc), render.DETAIL_LIMIT)))
            return
        await answer_long(message, render.fix_report(reports))

    @router.callback_query(AlertCallback.filter(F.do == AlertAction.POSITIONS),
                           flags=role_flag("positions"))
    async def positions(callback: CallbackQuery, callback_data: AlertCallback,
                        alert_outbox: Outbox, control: ControlService) -> None:
        found = await _spec(callback, callback_data, alert_outbox)
        if found is None:
            return
        message, spec = found
        await callback.answer()
        views = [p for p in control.positions()
                 if (p.account, p.symbol) == (spec.account, spec.symbol)]
        if not views:
            await message.answer(_("No open position on {symbol} now.").format(
                symbol=spec.symbol))
            return
        await answer_long(message, render.positions(views))

    return router
