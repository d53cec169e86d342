"""Every event is journaled first, then fanned out (notifier, metrics, tests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from loguru import logger

from engine.domain.events import Event

Subscriber = Callable[[Event], Awaitable[None]]


class EventBus:
    def __init__(self, journal_append: Callable[[Event], Awaitable[int]]) -> None:
        self._append = journal_append
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def publish(self, event: Event) -> None:
        await self._append(event)
        logger.bind(account=event.account).log(
            "WARNING" if event.severity >= 3 else "INFO" if event.severity else "DEBUG",
            "{} {}", event.kind, {k: v for k, v in event.payload().items() if k != "at"})
        for subscriber in list(self._subscribers):
            try:
                await subscriber(event)
            except Exception:  # a broken subscriber must never stop protection
                logger.exception("event subscriber failed on {}", event.kind)
