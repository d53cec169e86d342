"""The account's mark-price feed: one venue subscription for every guarded symbol, delivered to
the exit book in memory (no I/O per tick). Resubscribes when the guarded symbols change; while
the venue has no tick stream, or it is down, the snapshots' marks carry the exit plans."""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from engine.clock import Clock
from engine.domain.reports import PriceTick
from engine.errors import VenueError
from engine.ports import Venue

RESUBSCRIBE_SECONDS = 1.0  # how often an idle feed (no symbols yet) looks again
RESTART_SECONDS = 5.0  # after the stream failed or ended


class TickFeed:
    def __init__(self, venue: Venue, clock: Clock, symbols: Callable[[], frozenset[str]],
                 version: Callable[[], int], deliver: Callable[[PriceTick], None]) -> None:
        self.venue = venue
        self.clock = clock
        self.symbols = symbols
        self.version = version  # changes whenever the guarded symbols may have changed
        self.deliver = deliver

    async def run(self) -> None:
        while True:
            seen, wanted = self.version(), self.symbols()
            if not wanted:
                await self.clock.sleep(RESUBSCRIBE_SECONDS)
                continue
            changed = await self._follow(seen, wanted)
            if not changed:
                await self.clock.sleep(RESTART_SECONDS)

    async def _follow(self, seen: int, wanted: frozenset[str]) -> bool:
        """Deliver ticks until the symbols change (True) or the stream ends or fails (False)."""
        stream = self.venue.price_ticks(wanted)
        try:
            async for batch in stream:
                for tick in batch:
                    self.deliver(tick)
                if self.version() != seen and self.symbols() != wanted:
                    return True
        except VenueError as exc:
            logger.warning("{}: mark price stream failed: {}", self.venue.name, exc)
        except Exception:  # a bug must not end the trail for good: snapshots carry it, and
            logger.exception("{}: mark price stream broke", self.venue.name)  # we retry
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return False
