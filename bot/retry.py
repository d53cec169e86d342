"""Command replies, callback answers and edits survive Telegram's 429 and passing network trouble.

A request middleware on the commands' session (aiogram's own extension point, so no handler
changes): a 429 is waited out for exactly `retry_after`, network errors and 5xx answers are
retried with exponential back-off, on an injected clock; past `max_attempts` or `max_wait` the
error is logged and raised as before. Other errors (400, 403) are final and pass straight on.

Alerts do not go through it: the notifier has its own session and turns a 429 into a hold in
the durable outbox, so its sender never blocks here. Long polling has its own back-off.
A network error after Telegram received a message may repeat that message (at least once).
"""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response, TelegramType
from loguru import logger

from engine.clock import Clock

MAX_ATTEMPTS = 5
MAX_WAIT = 60.0  # seconds a reply may be held back in total; later it is stale anyway
BACKOFF_BASE = 1.0  # first wait after a network error or 5xx, doubled per attempt
BACKOFF_MAX = 15.0


class ReplyRetry(BaseRequestMiddleware):
    def __init__(self, clock: Clock, *, max_attempts: int = MAX_ATTEMPTS,
                 max_wait: float = MAX_WAIT, backoff_base: float = BACKOFF_BASE,
                 backoff_max: float = BACKOFF_MAX) -> None:
        if max_attempts < 1 or max_wait < 0:
            raise ValueError("max_attempts must be at least 1 and max_wait not negative")
        self.clock = clock
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max

    def _delay(self, exc: Exception, attempt: int) -> float:
        if isinstance(exc, TelegramRetryAfter):
            return float(exc.retry_after)
        return min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max)

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        if isinstance(method, GetUpdates):  # polling retries on its own
            return await make_request(bot, method)
        waited = 0.0
        attempt = 1
        while True:
            try:
                return await make_request(bot, method)
            except (TelegramRetryAfter, TelegramNetworkError, TelegramServerError) as exc:
                delay = self._delay(exc, attempt)
                where = _where(method)
                if attempt >= self.max_attempts or waited + delay > self.max_wait:
                    logger.error("{} not delivered after {} attempts and {:.0f} s: {}: {}; "
                                 "given up", where, attempt, waited, type(exc).__name__, exc)
                    raise
                logger.warning("{}: {}: {}; retry {} in {:.1f} s", where, type(exc).__name__,
                               exc, attempt + 1, delay)
            await self.clock.sleep(delay)
            waited += delay
            attempt += 1


def _where(method: TelegramMethod[Any]) -> str:
    chat = getattr(method, "chat_id", None)
    return method.__api_method__ + (f" to chat {chat}" if chat is not None else "")
