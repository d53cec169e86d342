"""Event-loop lag: how late a short sleep wakes up. One loop runs the bot, the engine and this
app, so a blocking call anywhere shows up here (and in /healthz as a 503)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress

LAG_INTERVAL_SECONDS = 0.25


class LoopLag:
    """Lag is measured on the loop's own monotonic time (a stall is real time by nature);
    tests pass `now` to make one without blocking."""

    def __init__(self, interval: float = LAG_INTERVAL_SECONDS,
                 now: Callable[[], float] | None = None) -> None:
        self.interval = interval
        self._now = now
        self.last = 0.0  # the last beat's lag
        self._beat: float | None = None  # when the current beat began
        self._task: asyncio.Task[None] | None = None

    def _time(self) -> float:
        return self._now() if self._now is not None else asyncio.get_running_loop().time()

    @property
    def seconds(self) -> float:
        """The last beat's lag, or the current beat's if it is already later than that."""
        if self._beat is None:
            return self.last
        return max(self.last, self._time() - self._beat - self.interval)

    async def run(self) -> None:
        while True:
            self._beat = started = self._time()
            await asyncio.sleep(self.interval)
            self.last = max(0.0, self._time() - started - self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="loop lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
