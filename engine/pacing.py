"""Fair turns on the event loop when thousands of tasks become ready at once.

At start-up with a big book, every supervisor resumes in the same loop turn (their database
round trips and venue replies come back together), and each step publishes an event (log line,
journal encoding): 2,000 steps held the loop ~150 ms in one block. `LoopPacer` splits such a
turn: callers pass at once until `budget` seconds of the turn are used, the rest wait in arrival
order and are let through, a measured batch per loop turn, so timers, stream events and the chat
run in between. When the loop is not crowded nobody waits (one scheduled callback per turn).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

DEFAULT_BUDGET = 0.01  # seconds of one loop turn the paced steps may use before they take turns


class LoopPacer:
    def __init__(self, budget: float = DEFAULT_BUDGET,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        """`timer`: the loop's real CPU time is what it measures (tests pass a scripted one)."""
        if budget <= 0:
            raise ValueError(f"pacing budget must be positive, got {budget}")
        self.budget = budget
        self._timer = timer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slice_start: float | None = None  # first pass of the open slice
        self._passed = 0  # passes in the open slice
        self._fit = 0  # how many steps fit one budget (measured), released per turn
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._draining = False  # batches are being released: newcomers queue behind
        self._batch_at = 0.0
        self._released: set[asyncio.Task[object]] = set()  # let through this turn: pass again
        self.waits = 0  # steps that had to wait for a later turn (tests, benchmarks)
        self.turns = 0  # later turns that released a batch

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run many): nothing carries over
            self._reset(loop)
        if self._released and asyncio.current_task() in self._released:
            return  # a step let through this turn that publishes again goes on
        now = self._timer()
        if self._slice_start is None:
            self._slice_start, self._passed = now, 1
            loop.call_soon(self._end_slice)  # runs at the start of the next turn
            return
        if not self._draining and not self._waiters and now - self._slice_start < self.budget:
            self._passed += 1
            return
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        self.waits += 1
        await future  # a cancelled waiter is skipped when its batch is released
        task = asyncio.current_task()
        if task is not None:
            self._released.add(task)

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slice_start = None
        self._passed = self._fit = 0
        self._waiters.clear()
        self._released.clear()
        self._draining = False

    def _end_slice(self) -> None:
        """The turn that opened the slice is over: release the next batch of waiters."""
        now = self._timer()
        self._released.clear()
        if not self._draining:
            # The first crowded turn measured what fits: the steps that passed within budget.
            self._fit = max(1, self._passed)
        else:
            # The batch released last turn ran since then: scale it to the budget.
            used = now - self._batch_at
            if used > self.budget:
                self._fit = max(1, int(self._fit * self.budget / used))
            elif used < self.budget / 2:
                self._fit *= 2
        released = 0
        while self._waiters and released < self._fit:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                released += 1
        if released == 0:  # nobody waits: the next caller opens a fresh slice
            self._draining = False
            self._slice_start = None
            return
        self._draining = True
        self._batch_at = now
        self.turns += 1
        assert self._loop is not None
        self._loop.call_soon(self._end_slice)  # after the released steps, in the next turn


async def no_pacing() -> None:
    """For contexts built without a pacer (tests that build an AccountContext by hand)."""
