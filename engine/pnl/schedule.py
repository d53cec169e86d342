"""A daily job at a local time, on the injected clock, that survives restarts.

APScheduler's `CronTrigger` computes the fire times (time zones and DST done right), but the
waiting is ours: APScheduler's own AsyncIOScheduler reads the wall clock (datetime.now and
loop.call_later) and cannot be driven by an injected Clock, so neither paper mode's clock nor a
test's ManualClock could move it. We sleep on `clock.sleep` in chunks of at most a minute, so a
jump of the wall clock (NTP, a suspended laptop) is noticed within a minute.

Each scheduled time ("slot") runs at most once, also across restarts: the slot is recorded in the
StateStore before the job runs. On start-up, the most recent slot is run at once if it came
after the last recorded one and no longer ago than the misfire grace (Vigil was stopped over
it); an older one is skipped. A first start ever (nothing recorded) only records where it
stands: there is no run to catch up on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from loguru import logger

from engine.clock import Clock
from engine.ports import StateStore

SCOPE = "schedule"
GRACE = timedelta(hours=6)
CHUNK = 60.0  # longest single sleep, seconds
EPSILON = 1e-3  # seconds: a wait this close to its end is over (float rounding of clocks)
_TICK = timedelta(microseconds=1)

# job(slot, previous slot): both UTC; the job covers [previous, slot)
Job = Callable[[datetime, datetime], Awaitable[None]]


def _second_occurrence(local: datetime) -> bool:
    """True for the repeat of a wall time that happens twice (the hour after clocks go back)."""
    return bool(local.fold) and local.replace(fold=0).utcoffset() != local.utcoffset()


class DailySchedule:
    def __init__(self, job: Job, *, at: time, tz: str, clock: Clock, state: StateStore,
                 key: str = "daily_report", grace: timedelta = GRACE,
                 chunk: float = CHUNK) -> None:
        self.job = job
        self.tz = ZoneInfo(tz)
        self.trigger = CronTrigger(hour=at.hour, minute=at.minute, second=at.second,
                                   timezone=self.tz)
        self.clock = clock
        self.state = state
        self.key = key
        self.grace = grace
        self.chunk = chunk
        self.runs: list[datetime] = []  # slots whose job was started by this instance
        self.caught_up = asyncio.Event()  # set once start-up's catch-up is done

    # --- fire times -------------------------------------------------------------------------
    def next_slot(self, after: datetime) -> datetime:
        """The first scheduled time strictly after `after` (UTC). When clocks go back and the
        daily time happens twice, only its first occurrence is a slot."""
        start = after
        while True:
            # Step in UTC, then localize: local arithmetic would lose which of two identical
            # wall times (fold) we are at, and find the same fire time again forever.
            local = (start.astimezone(UTC) + _TICK).astimezone(self.tz)
            fire = self.trigger.get_next_fire_time(None, local)
            assert fire is not None  # a daily trigger with no end date always has a next time
            fire = fire.astimezone(UTC)
            if not _second_occurrence(fire.astimezone(self.tz)):
                return fire
            start = fire

    def last_slot(self, at: datetime) -> datetime:
        """The most recent scheduled time at or before `at` (UTC)."""
        slot = self.next_slot(at - timedelta(days=3))
        while (following := self.next_slot(slot)) <= at:
            slot = following
        return slot

    def previous(self, slot: datetime) -> datetime:
        """The scheduled time before `slot`: 24 h earlier, or 23/25 h across a DST change."""
        return self.last_slot(slot - _TICK)

    # --- running ----------------------------------------------------------------------------
    async def recorded(self) -> datetime | None:
        """The last slot run (or deliberately skipped), as persisted."""
        raw = await self.state.get(SCOPE, self.key)
        return datetime.fromisoformat(raw).astimezone(UTC) if raw else None

    async def _record(self, slot: datetime) -> None:
        await self.state.put(SCOPE, self.key, slot.astimezone(UTC).isoformat())

    async def catch_up(self, now: datetime | None = None) -> bool:
        """At start-up: run the most recent slot (at or before `now`, default the clock's now)
        if it was missed while stopped and is within the grace; return whether it ran."""
        now = now or self.clock.now()
        slot = self.last_slot(now)
        last = await self.recorded()
        if last is None:
            await self._record(slot)  # first start: nothing was missed
            return False
        if slot <= last:
            return False
        if now - slot > self.grace:
            logger.info("{}: the run due at {} was missed while stopped and is older than "
                        "the {} grace; skipped", self.key, slot, self.grace)
            await self._record(slot)
            return False
        logger.info("{}: the run due at {} was missed while stopped; running it now",
                    self.key, slot)
        return await self.fire(slot)

    async def fire(self, slot: datetime) -> bool:
        """Run the job for `slot` unless that slot already ran; return whether it ran."""
        last = await self.recorded()
        if last is not None and last >= slot:
            return False
        await self._record(slot)  # before the job: a crash mid-job never repeats it
        self.runs.append(slot)
        try:
            await self.job(slot, self.previous(slot))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("{}: the job for {} failed", self.key, slot)
        return True

    async def _wait_until(self, target: datetime) -> None:
        while (remaining := (target - self.clock.now()).total_seconds()) > EPSILON:
            await self.clock.sleep(min(remaining, self.chunk))

    async def run(self) -> None:
        """Catch up, then run the job at every scheduled time until cancelled."""
        # Slots up to `done` are dealt with; one that falls due while catching up is next.
        done = self.clock.now()
        await self.catch_up(done)
        self.caught_up.set()
        while True:
            target = self.next_slot(done)
            await self._wait_until(target)
            now = done = max(self.clock.now(), target)
            slot = self.last_slot(now)  # the target, unless the clock jumped past more slots
            if now - slot > self.grace:
                logger.warning("{}: woke at {}, too long after {}; skipped", self.key, now,
                               slot)
                await self._record(slot)
                continue
            await self.fire(slot)
