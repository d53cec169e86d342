"""Every event is journaled first, then fanned out (notifier, metrics, tests).

Subscribers come in two kinds. Inline ones are awaited inside `publish`, in order: for cheap,
in-memory work (tests' sinks). Queued ones get their own queue and consumer task, so `publish`
never waits on their I/O (the notifier does SQL per alert): each sees the events in journal
order, one at a time, or all that are queued at once if it takes a batch (with each event's
journal sequence, so it can record how far it got); a failing one is logged and never stops the
others; `stop` drains them.

Back-pressure: a queued subscriber holds at most about `high_water` events (queued plus the
batch it is working on). Past that, `publish` waits until that subscriber is below `low_water`,
then publishes: nothing is dropped, and memory stays bounded however far the subscriber falls
behind. A consumer task never waits (a subscriber that publishes would wait on itself), nor
does anyone wait on a subscriber that was unsubscribed or whose consumer is gone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, NamedTuple, Protocol

from loguru import logger

from engine.clock import Clock
from engine.domain.events import Event

# The bound is about a subscriber that stopped keeping up (a slow disk under the outbox), not
# about bursts: the engine's own largest burst, the first cycle at 2,000 positions, queues a few
# thousand events, which must never make the protection path wait. 20,000 events are ~20 MB.
HIGH_WATER = 20_000
LOW_WATER = HIGH_WATER // 2  # publishers resume once half of the backlog is worked off


class Published(NamedTuple):
    """An event with its journal sequence (the row id `journal_append` returned)."""

    seq: int
    event: Event


Subscriber = Callable[[Event], Awaitable[None]]
BatchSubscriber = Callable[[list[Published]], Awaitable[None]]


class JournalFeed(Protocol):
    """What a subscriber that checkpoints its progress needs from the journal."""

    async def committed(self, seq: int) -> None:
        """Return once every event up to `seq` is committed (raise if its write failed)."""
        ...

    async def events_after(self, seq: int, limit: int) -> tuple[int, list[Published]]:
        """Up to `limit` committed events after `seq`, in order, and the last sequence read
        (`seq` itself when there are none)."""
        ...


class _Slot:
    """An event's place in the queues (one object in all of them), taken when `publish`
    starts, in call order (the journal's order): it is delivered once its append returned,
    never before an earlier one."""

    __slots__ = ("event", "seq")

    def __init__(self) -> None:
        self.seq: int | None = None  # None: the append is still under way
        self.event: Event | None = None


class _Marks:
    """The bus's high- and low-water marks, and how many subscribers are over the high one (so
    `publish` checks nothing else while none is)."""

    __slots__ = ("high", "low", "over")

    def __init__(self, high: int, low: int) -> None:
        self.high, self.low, self.over = high, low, 0


class _Queued:
    """One queued subscriber: its pending events and the task delivering them (while any)."""

    __slots__ = ("active", "batch", "consumer", "delivering", "full", "marks", "pending", "room",
                 "subscriber")

    def __init__(self, subscriber: Subscriber, batch: BatchSubscriber | None,
                 marks: _Marks) -> None:
        self.subscriber = subscriber
        self.batch = batch  # takes everything queued at once (one outbox transaction)
        self.pending: deque[_Slot] = deque()
        self.delivering = 0  # events handed to the subscriber and not yet done with
        self.consumer: asyncio.Task[None] | None = None
        self.marks = marks
        self.room = asyncio.Event()  # cleared at the high-water mark, set below the low one
        self.room.set()
        self.full = False  # room is cleared (a plain flag: checked per event)
        self.active = True  # False once unsubscribed

    @property
    def backlog(self) -> int:
        return len(self.pending) + self.delivering

    def reserve(self, slot: _Slot) -> None:
        self.pending.append(slot)
        if not self.full and len(self.pending) + self.delivering >= self.marks.high:
            self.full = True
            self.room.clear()
            self.marks.over += 1
            logger.warning("a bus subscriber is {} events behind: publishing waits until it "
                           "is below {}", self.backlog, self.marks.low)

    def ready(self) -> None:
        """A slot was filled or taken back: deliver what is now at the front."""
        if self.consumer is None and self.pending and self.pending[0].seq is not None:
            self.consumer = asyncio.create_task(self._consume(), name="bus subscriber")

    def take_back(self, slot: _Slot) -> None:
        """The append failed or was cancelled: the event is not delivered."""
        try:
            self.pending.remove(slot)
        except ValueError:
            return  # unsubscribed meanwhile
        self._freed()
        self.ready()

    def must_wait(self) -> bool:
        """Whether a publisher waits for this subscriber: over the mark, and someone is working
        the backlog off."""
        return self.active and self.full and self.consumer is not None

    def open_room(self) -> None:
        if self.full:
            self.full = False
            self.room.set()
            self.marks.over -= 1

    def _freed(self) -> None:
        if self.full and (self.backlog < self.marks.low or not self.active):
            self.open_room()

    def _take(self) -> list[Published]:
        """A batch: the filled slots up to the first unfilled one."""
        taken = []
        while self.pending and (slot := self.pending[0]).seq is not None:
            self.pending.popleft()
            assert slot.event is not None
            taken.append(Published(slot.seq, slot.event))
        self.delivering = len(taken)
        return taken

    async def _consume(self) -> None:
        pending = self.pending
        try:
            while pending and (first := pending[0]).seq is not None:
                if self.batch is not None:
                    await _deliver(self.batch, self._take())
                else:
                    pending.popleft()
                    self.delivering = 1
                    await _deliver(self.subscriber, first.event)
                self.delivering = 0
                self._freed()
        finally:  # the queue is empty, its front still being appended, or we were cancelled
            self.delivering = 0
            self.consumer = None
            self.open_room()  # nobody works the backlog off now: nobody may wait for it


async def _deliver(subscriber: Callable[[Any], Awaitable[None]],
                   event: Event | list[Published]) -> None:
    try:
        await subscriber(event)
    except Exception:  # a broken subscriber must never stop protection
        kinds = [p.event.kind for p in event] if isinstance(event, list) else event.kind
        logger.exception("event subscriber failed on {}", kinds)


class EventBus:
    def __init__(self, journal_append: Callable[[Event], Awaitable[int]], *,
                 queue_subscribers: bool = False, clock: Clock | None = None,
                 high_water: int = HIGH_WATER, low_water: int = LOW_WATER) -> None:
        """`journal_append` returns the event's journal sequence once the event is queued, or,
        for a durable event, once it is committed. `queue_subscribers`: the default kind for
        `subscribe` (the runtime queues all of its subscribers; tests' sinks are inline so they
        see an event at once). `clock`: every event is stamped with its time (the engine's
        injected clock). `high_water` / `low_water`: a queued subscriber's backlog (events) at
        which `publish` starts to wait, and below which it goes on."""
        if not 1 <= low_water < high_water:
            raise ValueError(f"the bus needs 1 <= low_water < high_water, got low_water="
                             f"{low_water}, high_water={high_water}")
        self._append = journal_append
        self._clock = clock
        self._queue_by_default = queue_subscribers
        self._marks = _Marks(high_water, low_water)
        self._inline: list[Subscriber] = []
        self._queued: list[_Queued] = []
        self.waits = 0  # publishes that waited for a subscriber's backlog (metrics)

    def subscribe(self, subscriber: Subscriber, *, queued: bool | None = None,
                  batch: BatchSubscriber | None = None) -> Callable[[], None]:
        """Returns the unsubscribe function (a queued subscriber's undelivered events go too).
        With `batch`, a queued subscriber gets, in journal order, everything queued for it at
        once, each event with its journal sequence (`subscriber` is then only its inline
        form)."""
        if not (self._queue_by_default if queued is None else queued):
            self._inline.append(subscriber)
            return lambda: self._inline.remove(subscriber)
        entry = _Queued(subscriber, batch, self._marks)
        self._queued.append(entry)

        def unsubscribe() -> None:
            self._queued.remove(entry)
            entry.active = False
            entry.pending.clear()
            entry.open_room()  # whoever waited for it goes on
        return unsubscribe

    async def publish(self, event: Event) -> Event:
        """Journal, log and fan out one event; returns it as journaled (stamped). Waits first
        while a queued subscriber is over its high-water mark."""
        if self._marks.over:
            await self._room()
        if self._clock is not None:
            event = replace(event, at=self._clock.now())
        # Places in the queues are taken in call order, which is the journal's order: a later
        # event is never delivered before an earlier one whose append (an intent's commit) is
        # still under way, so a subscriber's "everything up to seq N" holds.
        slot, entries = _Slot(), tuple(self._queued)
        for entry in entries:
            entry.reserve(slot)
        try:
            seq = await self._append(event)
        except BaseException:  # not journaled, or cancelled (only an intent's append waits
            # long enough for that, and an intent has no alert): not delivered
            for entry in entries:
                entry.take_back(slot)
            raise
        logger.bind(account=event.account).opt(lazy=True).log(
            "WARNING" if event.severity >= 3 else "INFO" if event.severity else "DEBUG",
            "{} {}", lambda: event.kind,
            lambda: {k: v for k, v in event.payload().items() if k != "at"})
        slot.seq, slot.event = seq, event
        for entry in entries:
            entry.ready()
        for subscriber in list(self._inline):
            await _deliver(subscriber, event)
        return event

    async def _room(self) -> None:
        current = asyncio.current_task()
        if any(e.consumer is current for e in self._queued):
            return  # a subscriber publishing: waiting could wait on itself, or on a cycle
        counted = False
        while waiting := [e for e in self._queued if e.must_wait()]:
            if not counted:
                counted = True
                self.waits += 1
            await waiting[0].room.wait()

    async def stop(self) -> None:
        """Deliver everything published so far to the queued subscribers. The bus stays usable:
        a later publish starts their consumers again."""
        while consumers := [e.consumer for e in self._queued if e.consumer is not None]:
            await asyncio.gather(*consumers, return_exceptions=True)

    def backlog(self) -> int:
        """Events waiting for queued subscribers or being delivered (for tests and metrics)."""
        return sum(e.backlog for e in self._queued)
