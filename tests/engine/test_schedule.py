"""The daily schedule on a ManualClock: fire times in the report time zone (DST included),
catching up a run missed while stopped, and never running one scheduled time twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.clock import ManualClock
from engine.pnl.schedule import DailySchedule
from storage.db import Database
from storage.repositories import StateRepo
from tests.engine.conftest import MemoryState

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
# 20:00 in Moscow (UTC+3) is 17:00 UTC
TODAY_SLOT = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
YESTERDAY_SLOT = TODAY_SLOT - timedelta(days=1)


class RecordingClock(ManualClock):
    """Records every sleep; `jump` moves the wall clock alone, as NTP or a suspend would."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)

    def jump(self, delta: timedelta) -> None:
        self._now += delta


class Runs:
    def __init__(self) -> None:
        self.calls: list[tuple[datetime, datetime]] = []

    async def __call__(self, slot: datetime, previous: datetime) -> None:
        self.calls.append((slot, previous))

    @property
    def slots(self) -> list[datetime]:
        return [slot for slot, _ in self.calls]


def schedule(runs: Any, clock: ManualClock, state: Any, tz: str = "Europe/Moscow",
             at: time = time(20, 0), **kwargs: Any) -> DailySchedule:
    return DailySchedule(runs, at=at, tz=tz, clock=clock, state=state, **kwargs)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@asynccontextmanager
async def running(s: DailySchedule) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(s.run())
    await settle()
    try:
        yield task
    finally:
        task.cancel()  # a stop (or a crash: nothing more is written either way)
        await asyncio.gather(task, return_exceptions=True)


async def advance_by_minutes(clock: ManualClock, minutes: int) -> None:
    for _ in range(minutes):
        await clock.advance(60)
        await settle()


# --- fire times ---------------------------------------------------------------------------------
def test_fire_times_are_the_local_time_in_the_zone() -> None:
    s = schedule(Runs(), ManualClock(NOW), MemoryState())
    assert s.next_slot(NOW) == TODAY_SLOT
    assert s.next_slot(TODAY_SLOT) == TODAY_SLOT + timedelta(days=1)  # strictly after
    assert s.next_slot(TODAY_SLOT - timedelta(microseconds=1)) == TODAY_SLOT
    assert s.last_slot(NOW) == YESTERDAY_SLOT
    assert s.last_slot(TODAY_SLOT) == TODAY_SLOT  # at or before
    assert s.previous(TODAY_SLOT) == YESTERDAY_SLOT


def test_fire_times_follow_dst_in_both_directions() -> None:
    s = schedule(Runs(), ManualClock(NOW), MemoryState(), tz="Europe/Berlin")
    spring = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert s.next_slot(spring) == datetime(2026, 3, 28, 19, 0, tzinfo=UTC)  # CET, UTC+1
    after = s.next_slot(datetime(2026, 3, 28, 19, 0, tzinfo=UTC))
    assert after == datetime(2026, 3, 29, 18, 0, tzinfo=UTC)  # CEST, UTC+2: 23 h later
    assert s.previous(after) == datetime(2026, 3, 28, 19, 0, tzinfo=UTC)
    autumn = s.next_slot(datetime(2026, 10, 24, 18, 0, tzinfo=UTC))
    assert autumn == datetime(2026, 10, 25, 19, 0, tzinfo=UTC)  # back to CET: 25 h later
    assert s.previous(autumn) == datetime(2026, 10, 24, 18, 0, tzinfo=UTC)


def test_a_daily_time_that_happens_twice_or_not_at_all_fires_once_that_day() -> None:
    s = schedule(Runs(), ManualClock(NOW), MemoryState(), tz="Europe/Berlin", at=time(2, 30))
    # 2026-10-25: 02:30 happens twice in Berlin (00:30 UTC in summer time, 01:30 UTC after)
    slots = [s.next_slot(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))]
    for _ in range(2):
        slots.append(s.next_slot(slots[-1]))
    assert slots == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # the first 02:30 only
                     datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
                     datetime(2026, 10, 27, 1, 30, tzinfo=UTC)]
    assert s.last_slot(datetime(2026, 10, 25, 1, 45, tzinfo=UTC)) == slots[0]
    # 2026-03-29: 02:30 does not exist in Berlin; that day's report still comes, once
    spring = [s.next_slot(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))]
    spring.append(s.next_slot(spring[0]))
    assert [x.date() for x in spring] == [date(2026, 3, 29), date(2026, 3, 30)]
    assert spring[1] == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


# --- running on the clock -----------------------------------------------------------------------
async def test_fires_at_the_daily_time_each_day_and_not_before() -> None:
    clock, state, runs = RecordingClock(NOW), MemoryState(), Runs()
    async with running(schedule(runs, clock, state)):
        assert runs.calls == []  # a first start has nothing to catch up
        await clock.advance(5 * 3600 - 60)  # 16:59 UTC, 19:59 in Moscow
        await settle()
        assert runs.calls == []
        await clock.advance(60)
        await settle()
        assert runs.calls == [(TODAY_SLOT, YESTERDAY_SLOT)]
        await advance_by_minutes(clock, 24 * 60)
        assert runs.slots == [TODAY_SLOT, TODAY_SLOT + timedelta(days=1)]
    assert max(clock.sleeps) <= 60  # chunks: a jump of the wall clock is noticed in a minute
    assert await state.get("schedule", "daily_report") == (
        TODAY_SLOT + timedelta(days=1)).isoformat()


async def test_runs_across_the_spring_dst_change_at_local_time() -> None:
    start = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    clock, runs = RecordingClock(start), Runs()
    async with running(schedule(runs, clock, MemoryState(), tz="Europe/Berlin")):
        await advance_by_minutes(clock, 2 * 24 * 60)
    assert runs.calls == [
        (datetime(2026, 3, 28, 19, 0, tzinfo=UTC), datetime(2026, 3, 27, 19, 0, tzinfo=UTC)),
        (datetime(2026, 3, 29, 18, 0, tzinfo=UTC), datetime(2026, 3, 28, 19, 0, tzinfo=UTC)),
    ]


async def test_a_wall_clock_jump_is_noticed_within_a_minute() -> None:
    clock, runs = RecordingClock(NOW), Runs()
    async with running(schedule(runs, clock, MemoryState())):
        clock.jump(timedelta(hours=5))  # 17:00 UTC now, though no time passed for sleepers
        await clock.advance(60)
        await settle()
    assert runs.slots == [TODAY_SLOT]


# --- stopped over a scheduled time --------------------------------------------------------------
async def test_a_run_missed_while_stopped_is_sent_at_start_within_the_grace_once() -> None:
    state, runs = MemoryState(), Runs()
    await state.put("schedule", "daily_report", YESTERDAY_SLOT.isoformat())  # ran yesterday
    clock = RecordingClock(TODAY_SLOT + timedelta(hours=2))  # started 2 h after today's time
    async with running(schedule(runs, clock, state)):
        assert runs.calls == [(TODAY_SLOT, YESTERDAY_SLOT)]
    async with running(schedule(runs, clock, state)):  # restarted again: not a second time
        await clock.advance(3600)
        await settle()
    assert runs.slots == [TODAY_SLOT]


async def test_a_run_missed_longer_ago_than_the_grace_is_skipped() -> None:
    state, runs = MemoryState(), Runs()
    await state.put("schedule", "daily_report", YESTERDAY_SLOT.isoformat())
    clock = RecordingClock(TODAY_SLOT + timedelta(hours=6, seconds=1))
    async with running(schedule(runs, clock, state)):
        assert runs.calls == []
        assert await state.get("schedule", "daily_report") == TODAY_SLOT.isoformat()
        await advance_by_minutes(clock, 18 * 60)  # the next one comes as usual
    assert runs.slots == [TODAY_SLOT + timedelta(days=1)]


async def test_the_grace_is_a_setting() -> None:
    state, runs = MemoryState(), Runs()
    await state.put("schedule", "daily_report", YESTERDAY_SLOT.isoformat())
    clock = RecordingClock(TODAY_SLOT + timedelta(hours=2))
    async with running(schedule(runs, clock, state, grace=timedelta(hours=1))):
        pass
    assert runs.calls == []


async def test_a_crash_during_the_job_never_repeats_that_time_after_restart() -> None:
    state, clock = MemoryState(), RecordingClock(NOW)
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[datetime] = []

    async def slow(slot: datetime, previous: datetime) -> None:
        calls.append(slot)
        started.set()
        await release.wait()

    async with running(schedule(slow, clock, state)):
        await clock.advance(5 * 3600)
        await asyncio.wait_for(started.wait(), 1)
    # killed mid-job; back up 30 s later, within the grace
    await clock.advance(30)
    async with running(schedule(slow, clock, state)):
        await clock.advance(3600)
        await settle()
    assert calls == [TODAY_SLOT]


async def test_restart_on_sqlite_keeps_the_last_run(tmp_path: Path) -> None:
    path = tmp_path / "vigil.sqlite3"
    runs = Runs()
    db = await Database.open(path)
    try:
        first = schedule(runs, ManualClock(NOW), StateRepo(db))
        assert await first.catch_up() is False  # first start: records where it stands
        assert await first.fire(TODAY_SLOT) is True
    finally:
        await db.close()
    db = await Database.open(path)
    try:
        again = schedule(runs, ManualClock(TODAY_SLOT + timedelta(minutes=1)), StateRepo(db))
        assert await again.recorded() == TODAY_SLOT
        assert await again.catch_up() is False
        assert await again.fire(TODAY_SLOT) is False
    finally:
        await db.close()
    assert runs.slots == [TODAY_SLOT]


async def test_a_failing_job_is_logged_and_the_schedule_goes_on() -> None:
    clock, calls = RecordingClock(NOW), []

    async def failing(slot: datetime, previous: datetime) -> None:
        calls.append(slot)
        raise RuntimeError("telegram down")

    async with running(schedule(failing, clock, MemoryState())):
        await advance_by_minutes(clock, 29 * 60)
    assert calls == [TODAY_SLOT, TODAY_SLOT + timedelta(days=1)]


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata", "America/New_York"])
def test_last_slot_is_never_after_the_time_given(tz: str) -> None:
    s = schedule(Runs(), ManualClock(NOW), MemoryState(), tz=tz, at=time(0, 30))
    for hours in range(0, 24 * 3, 5):
        at = NOW + timedelta(hours=hours)
        last = s.last_slot(at)
        assert last <= at < s.next_slot(last)
