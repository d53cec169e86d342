"""Alerts: engine events rendered per chat language and sent to the alert chats.

Queued alerts for one chat are joined into one message (less noise when many things happen at
once), split at 4096 characters, critical ones with sound and the rest silent. A 429 waits for
`retry_after`; a chat that blocked the bot is dropped. (The durable SQLite outbox replaces the
in-memory queue with the control-plane issue.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import (
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from loguru import logger

from bot import render
from bot.i18n import SUPPORTED
from bot.roles import RoleBook
from bot.split import split_message
from engine.clock import Clock
from engine.domain.events import Event, Severity
from engine.ports import StateStore

MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Alert:
    chat_id: int
    text: str
    loud: bool


class Notifier:
    def __init__(self, bot: Bot, *, chats: tuple[int, ...], roles: RoleBook, i18n: I18n,
                 state: StateStore, clock: Clock) -> None:
        self.bot = bot
        self.chats = list(chats)
        self.roles = roles
        self.i18n = i18n
        self.state = state
        self.clock = clock
        self.queue: asyncio.Queue[Alert] = asyncio.Queue()
        self._strangers_reported: set[int] = set()

    async def _locale(self, chat_id: int) -> str:
        chosen = await self.state.get("lang", str(chat_id))
        return chosen if chosen in SUPPORTED else self.i18n.default_locale

    async def on_event(self, event: Event) -> None:
        if event.severity < Severity.INFO:
            return
        for chat_id in self.chats:
            with self.i18n.context(), self.i18n.use_locale(await self._locale(chat_id)):
                text = render.event(event)
            if text:
                self.queue.put_nowait(Alert(chat_id, text, event.severity >= Severity.CRITICAL))

    async def on_stranger(self, user: User) -> None:
        """Admins hear once about each stranger, with the id they need to add them."""
        if user.id in self._strangers_reported:
            return
        self._strangers_reported.add(user.id)
        for admin in self.roles.admins():
            with self.i18n.context(), self.i18n.use_locale(await self._locale(admin)):
                text = _("🔒 {name} (id {id}) wrote to the bot and was ignored. To let them in, "
                         "add the id to telegram.viewers, traders or admins.").format(
                    name=user.full_name, id=user.id)
            self.queue.put_nowait(Alert(admin, text, False))

    async def run(self) -> None:
        while True:
            first = await self.queue.get()
            batch = [first]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self._send_batch(batch)

    async def flush(self, timeout: float = 5.0) -> None:
        """Send what is queued (used at shutdown)."""
        batch = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch:
            try:
                await asyncio.wait_for(self._send_batch(batch), timeout)
            except TimeoutError:
                logger.warning("shutdown: {} alerts not delivered in time", len(batch))

    async def _send_batch(self, batch: list[Alert]) -> None:
        by_chat: dict[int, list[Alert]] = {}
        for alert in batch:
            by_chat.setdefault(alert.chat_id, []).append(alert)
        for chat_id, alerts in by_chat.items():
            loud = any(a.loud for a in alerts)
            for chunk in split_message("\n".join(a.text for a in alerts)):
                await self._send(chat_id, chunk, loud)

    async def _send(self, chat_id: int, text: str, loud: bool) -> None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                await self.bot.send_message(chat_id, text, disable_notification=not loud)
                return
            except TelegramRetryAfter as exc:
                await self.clock.sleep(exc.retry_after)
            except TelegramForbiddenError:
                logger.warning("chat {} blocked the bot; no more alerts go there", chat_id)
                if chat_id in self.chats:
                    self.chats.remove(chat_id)
                return
            except (TelegramNetworkError, TelegramServerError) as exc:
                logger.warning("alert to {} failed ({}); retrying", chat_id, exc)
                await self.clock.sleep(min(2 ** attempt, 30))
            except Exception:
                logger.exception("alert to {} dropped", chat_id)
                return
        logger.error("alert to {} dropped after {} attempts", chat_id, MAX_ATTEMPTS)
