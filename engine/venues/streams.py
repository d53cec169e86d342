"""Websocket streams: one pump per subscription, merged into a single event iterator.

A pump that fails reports StreamStatus(up=False) once, reconnects with exponential backoff and
jitter, and when every subscription is healthy again StreamStatus(up=True) is emitted. The REST
snapshot loop stays the safety net; streams only make protection faster."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.domain.reports import StreamStatus, VenueEvent
from engine.venues.dialects.base import Subscription

Raw = dict[str, Any]
Sleep = Callable[[float], Awaitable[None]]
Convert = Callable[[Subscription, list[Raw]], list[VenueEvent]]
Describe = Callable[[Subscription, Exception], str]


class Watcher(Protocol):
    """The seam tests replace: one ccxt pro watch call for a subscription."""

    async def __call__(self, subscription: Subscription) -> list[Raw]: ...


class ExchangeWatcher:
    """The real watcher: ccxt pro `watch_positions` / `watch_orders` on the venue's exchange."""

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange

    async def __call__(self, subscription: Subscription) -> list[Raw]:
        params = dict(subscription.params)
        if subscription.channel == "positions":
            result = await self._exchange.watch_positions(None, None, None, params)
        else:
            result = await self._exchange.watch_orders(None, None, None, params)
        return list(result or [])


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5  # the delay is drawn from [ (1 - jitter) * d, d ]

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.initial * self.factor ** min(attempt, 32))
        return ceiling * (1 - self.jitter * rng.random())


class StreamMux:
    def __init__(self, subscriptions: tuple[Subscription, ...], watcher: Watcher,
                 convert: Convert, describe: Describe, *, sleep: Sleep,
                 backoff: Backoff, rng: random.Random) -> None:
        self._subscriptions = subscriptions
        self._watcher = watcher
        self._convert = convert
        self._describe = describe
        self._sleep = sleep
        self._backoff = backoff
        self._rng = rng
        self._closed = False
        self._queues: set[asyncio.Queue[VenueEvent | None]] = set()

    def close(self) -> None:
        """End every running `events()` iterator."""
        self._closed = True
        for queue in self._queues:
            queue.put_nowait(None)

    async def events(self) -> AsyncIterator[VenueEvent]:
        if self._closed:
            return
        queue: asyncio.Queue[VenueEvent | None] = asyncio.Queue()
        down: set[str] = set()
        self._queues.add(queue)
        tasks = [asyncio.create_task(self._pump(sub, queue, down), name=f"stream:{sub.name}")
                 for sub in self._subscriptions]
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._queues.discard(queue)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(self, sub: Subscription, queue: asyncio.Queue[VenueEvent | None],
                    down: set[str]) -> None:
        attempt = 0
        while not self._closed:
            try:
                raws = await self._watcher(sub)
            except Exception as exc:  # CancelledError passes: it is a BaseException
                if self._closed:
                    return
                if sub.name not in down:
                    down.add(sub.name)
                    queue.put_nowait(StreamStatus(False, self._describe(sub, exc)))
                await self._sleep(self._backoff.delay(attempt, self._rng))
                attempt += 1
                continue
            attempt = 0
            if sub.name in down:
                down.discard(sub.name)
                if not down:
                    queue.put_nowait(StreamStatus(True, f"{sub.name} reconnected"))
            for event in self._convert(sub, raws):
                queue.put_nowait(event)
            await asyncio.sleep(0)  # a watcher that answers at once must not starve the loop
