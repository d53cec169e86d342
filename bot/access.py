"""Access control: an outer middleware drops strangers before any handler runs, and an inner one
refuses commands above the user's role (declared per handler with the `role` flag). Also here:
button answers that come too late for Telegram reach the chat as a message instead."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import CallbackQuery, Message, TelegramObject, User
from aiogram.utils.i18n import gettext as _
from loguru import logger

from bot.render import NAME_LIMIT, clean, role_label
from bot.roles import Role, RoleBook

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
StrangerHook = Callable[[User], Awaitable[None]]


class AccessMiddleware(BaseMiddleware):
    def __init__(self, roles: RoleBook, on_stranger: StrangerHook | None = None) -> None:
        self.roles = roles
        self.on_stranger = on_stranger

    async def __call__(self, handler: Handler, event: TelegramObject,
                       data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        role = self.roles.role_of(user.id) if user is not None else None
        if user is None or role is None:
            # Nothing is done and nothing is answered: a stranger learns nothing about us.
            logger.warning("update from a stranger dropped: user id {}",
                           user.id if user else None)
            if user is not None and self.on_stranger is not None:
                await self.on_stranger(user)
            return None
        data["role"] = role
        data["actor"] = f"{clean(user.full_name, NAME_LIMIT)} ({user.id})"
        return await handler(event, data)


class RoleGate(BaseMiddleware):
    """Runs after filters matched, so it knows the handler's `role` flag."""

    async def __call__(self, handler: Handler, event: TelegramObject,
                       data: dict[str, Any]) -> Any:
        needed: Role = get_flag(data, "role", default=Role.VIEWER)
        role: Role = data["role"]
        if role >= needed:
            return await handler(event, data)
        text = _("⛔ This needs the {needed} role; you are {role}.").format(
            needed=role_label(needed), role=role_label(role))
        if isinstance(event, Message):
            await event.answer(text)
        elif isinstance(event, CallbackQuery):
            await event.answer(text, show_alert=True)
        return None


def _too_late(exc: TelegramBadRequest) -> bool:
    """Telegram's answer to a callback answered after its ~15 s window, or answered twice."""
    return isinstance(exc.method, AnswerCallbackQuery) and (
        "query is too old" in exc.message or "query ID is invalid" in exc.message)


class LateAnswerMiddleware(BaseMiddleware):
    """A button press answered too late (a repeated press, or an action that ran longer than
    Telegram waits) is not an error: the action already happened. Its answer, if it says
    something, goes to the chat as a message instead of a popup nobody will see."""

    async def __call__(self, handler: Handler, event: TelegramObject,
                       data: dict[str, Any]) -> Any:
        try:
            return await handler(event, data)
        except TelegramBadRequest as exc:
            if not (isinstance(event, CallbackQuery) and _too_late(exc)):
                raise
            assert isinstance(exc.method, AnswerCallbackQuery)
            logger.info("callback {} answered too late ({}); telling the chat instead",
                        event.id, exc.message)
            text = exc.method.text
            chat = event.message.chat.id if event.message is not None else event.from_user.id
            bot = data.get("bot")
            if text and bot is not None:
                await bot.send_message(chat, text)
            return None
