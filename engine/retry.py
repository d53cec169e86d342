"""Retry transient venue errors with exponential backoff and full jitter, on an injected clock."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.clock import Clock
from engine.errors import Transient

T = TypeVar("T")


async def retry_transient(operation: Callable[[], Awaitable[T]], clock: Clock, *,
                          attempts: int = 4, base_delay: float = 0.2, max_delay: float = 2.0,
                          rng: random.Random | None = None,
                          also: tuple[type[Exception], ...] = ()) -> T:
    """`also`: more errors safe to retry for this operation (a read's OutcomeUnknown: a
    timed-out read changed nothing, unlike a command)."""
    rng = rng or random.Random()
    for attempt in range(attempts):
        try:
            return await operation()
        except (Transient, *also):
            if attempt == attempts - 1:
                raise
            await clock.sleep(rng.uniform(0, min(max_delay, base_delay * 2 ** attempt)))
    raise AssertionError("unreachable")
