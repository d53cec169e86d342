"""Every event is journaled first, then fanned out (notifier, metrics, tests).

Subscribers come in two kinds. Inline ones are awaited inside `publish`, in order: for cheap,
in-memory work (tests' sinks). Queued ones get their own queue and consumer task, so `publish`
never waits on their I/O (the notifier does SQL per alert): each sees the events in publish
order, one at a time, or all that are queued at once if it takes a batch; a failing one is
logged and never stops the others; `stop` drains them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from loguru import logger

from engine.clock import Clock
from engine.domain.events import Event

Subscriber = Callable[[Event], Awaitable[None]]
BatchSubscriber = Callable[[list[Event]], Awaitable[None]]


class _Queued:
    """One queued subscriber: its pending events and the task delivering them (while any)."""

    __slots__ = ("batch", "consumer", "pending", "subscriber")

    def __init__(self, subscriber: Subscriber, batch: BatchSubscriber | None = None) -> None:
        self.subscriber = subscriber
        self.batch = batch  # takes everything queued at once (one outbox transaction)
        self.pending: deque[Event] = deque()
        self.consumer: asyncio.Task[None] | None = None

    def put(self, event: Event) -> None:
        self.pending.append(event)
        if self.consumer is None:  # started on demand, ends when the queue is empty
            self.consumer = asyncio.create_task(self._consume(), name="bus subscriber")

    async def _consume(self) -> None:
        try:
            while self.pending:
                if self.batch is not None:
                    events = list(self.pending)
                    self.pending.clear()
                    await _deliver(self.batch, events)
                else:
                    await _deliver(self.subscriber, self.pending.popleft())
        finally:
            self.consumer = None


async def _deliver(subscriber: Callable[[Any], Awaitable[None]], event: Event | list[Event]
                   ) -> None:
    try:
        await subscriber(event)
    except Exception:  # a broken subscriber must never stop protection
        kinds = [e.kind for e in event] if isinstance(event, list) else event.kind
        logger.exception("event subscriber failed on {}", kinds)


class EventBus:
    def __init__(self, journal_append: Callable[[Event], Awaitable[int]], *,
                 queue_subscribers: bool = False, clock: Clock | None = None) -> None:
        """`journal_append` returns once the event is queued, or, for a durable event, once it
        is committed. `queue_subscribers`: the default kind for `subscribe` (the runtime queues
        all of its subscribers; tests' sinks are inline so they see an event at once).
        `clock`: every event is stamped with its time (the engine's injected clock)."""
        self._append = journal_append
        self._clock = clock
        self._queue_by_default = queue_subscribers
        self._inline: list[Subscriber] = []
        self._queued: list[_Queued] = []

    def subscribe(self, subscriber: Subscriber, *, queued: bool | None = None,
                  batch: BatchSubscriber | None = None) -> Callable[[], None]:
        """Returns the unsubscribe function (a queued subscriber's undelivered events go too).
        With `batch`, a queued subscriber gets, in publish order, everything queued for it at
        once (`subscriber` is then only its inline form)."""
        if not (self._queue_by_default if queued is None else queued):
            self._inline.append(subscriber)
            return lambda: self._inline.remove(subscriber)
        entry = _Queued(subscriber, batch)
        self._queued.append(entry)

        def unsubscribe() -> None:
            self._queued.remove(entry)
            entry.pending.clear()
        return unsubscribe

    async def publish(self, event: Event) -> Event:
        """Journal, log and fan out one event; returns it as journaled (stamped)."""
        if self._clock is not None:
            event = replace(event, at=self._clock.now())
        await self._append(event)
        logger.bind(account=event.account).opt(lazy=True).log(
            "WARNING" if event.severity >= 3 else "INFO" if event.severity else "DEBUG",
            "{} {}", lambda: event.kind,
            lambda: {k: v for k, v in event.payload().items() if k != "at"})
        for entry in self._queued:
            entry.put(event)
        for subscriber in list(self._inline):
            await _deliver(subscriber, event)
        return event

    async def stop(self) -> None:
        """Deliver everything published so far to the queued subscribers. The bus stays usable:
        a later publish starts their consumers again."""
        while consumers := [e.consumer for e in self._queued if e.consumer is not None]:
            await asyncio.gather(*consumers, return_exceptions=True)

    def backlog(self) -> int:
        """Events waiting for queued subscribers (for tests and metrics)."""
        return sum(len(e.pending) for e in self._queued)
