"""Bus back-pressure (issue 16 item 2): a queued subscriber that falls behind makes `publish`
wait at its high-water mark until it is below the low-water mark; nothing is dropped, the
journal's order is kept, and nobody waits on a subscriber that publishes itself, was
unsubscribed, fails, or whose consumer is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.bus import EventBus, Published
from engine.domain import events as ev
from storage.db import Database
from storage.journal import Journal

BTC = "BTC/USDT:USDT"


def hold(i: int | str) -> ev.HoldSet:
    return ev.HoldSet(account="paper", reason=f"r{i}", by="test")


def reasons(batch: list[Published]) -> list[str]:
    return [p.event.reason for p in batch if isinstance(p.event, ev.HoldSet)]


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    db = await Database.open(tmp_path / "v.db")
    yield Journal(db, background=True)
    await db.close()


class SlowBatch:
    """A batch subscriber that finishes each batch only when the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[Published]] = []
        self.releases: list[asyncio.Event] = []
        self.arrived = asyncio.Event()
        self.fail = False
        self.opened = False  # from now on nothing waits

    def open(self) -> None:
        self.opened = True
        for release in self.releases:
            release.set()

    async def __call__(self, batch: list[Published]) -> None:
        self.batches.append(batch)
        release = asyncio.Event()
        if self.opened:
            release.set()
        self.releases.append(release)
        self.arrived.set()
        await release.wait()
        if self.fail:
            raise RuntimeError("outbox down")

    async def next_batch(self) -> None:
        await asyncio.wait_for(self.arrived.wait(), 5)
        self.arrived.clear()

    def seen(self) -> list[str]:
        return [r for batch in self.batches for r in reasons(batch)]


async def unsubscribed_one(event: ev.Event) -> None:
    raise AssertionError("a batch subscriber is not called one event at a time")


async def settle() -> None:
    for _ in range(20):  # let every runnable task run until it blocks
        await asyncio.sleep(0)


@dataclass
class AtTheMark:
    bus: EventBus
    slow: SlowBatch
    unsubscribe: Callable[[], None]
    waiting: asyncio.Task[ev.Event]  # r4's publish


async def at_the_mark(journal: Journal, *, fail: bool = False) -> AtTheMark:
    """A bus whose slow subscriber holds r0 as a batch with r1..r3 queued: 4 events, its
    high-water mark; r4's publish waits."""
    bus = EventBus(journal.append, high_water=4, low_water=2)
    slow = SlowBatch()
    slow.fail = fail
    unsubscribe = bus.subscribe(unsubscribed_one, queued=True, batch=slow)
    await bus.publish(hold(0))
    await slow.next_batch()
    for i in range(1, 4):
        await asyncio.wait_for(bus.publish(hold(i)), 5)
    assert bus.backlog() == 4
    waiting = asyncio.create_task(bus.publish(hold(4)))
    await settle()
    assert not waiting.done()
    return AtTheMark(bus, slow, unsubscribe, waiting)


async def test_publish_waits_at_the_mark_and_goes_on_below_the_low_one_in_order(
        journal: Journal) -> None:
    m = await at_the_mark(journal)
    bus, slow, waiting = m.bus, m.slow, m.waiting
    assert [r.kind for r in await journal.rows()] == ["hold_set"] * 4  # r4 not yet journaled

    slow.releases[0].set()  # r0 done; r1..r3 are the next batch: 3 events, still >= 2
    await slow.next_batch()
    await settle()
    assert not waiting.done() and bus.backlog() == 3
    slow.releases[1].set()  # below the low-water mark: r4 goes
    await asyncio.wait_for(waiting, 5)
    assert bus.waits == 1

    await slow.next_batch()
    slow.releases[2].set()
    await asyncio.wait_for(bus.stop(), 5)
    assert [reasons(b) for b in slow.batches] == [["r0"], ["r1", "r2", "r3"], ["r4"]]
    rows = await journal.rows()
    assert [p.seq for b in slow.batches for p in b] == [r.id for r in rows]  # journal order
    assert bus.backlog() == 0


async def test_a_failing_subscriber_lets_waiting_publishers_go_and_gets_the_rest(
        journal: Journal) -> None:
    m = await at_the_mark(journal, fail=True)
    bus, slow, waiting = m.bus, m.slow, m.waiting
    slow.releases[0].set()
    await slow.next_batch()
    slow.releases[1].set()
    await asyncio.wait_for(waiting, 5)
    await slow.next_batch()
    slow.releases[2].set()
    await asyncio.wait_for(bus.stop(), 5)
    assert slow.seen() == ["r0", "r1", "r2", "r3", "r4"]  # every batch failed, none was lost


async def test_unsubscribing_lets_waiting_publishers_go(journal: Journal) -> None:
    m = await at_the_mark(journal)
    bus, slow, waiting = m.bus, m.slow, m.waiting
    m.unsubscribe()
    await asyncio.wait_for(waiting, 5)
    slow.releases[0].set()
    await asyncio.wait_for(bus.stop(), 5)
    assert [r.payload["reason"] for r in await journal.rows()] == [f"r{i}" for i in range(5)]


async def test_stop_while_publishers_wait_delivers_everything(journal: Journal) -> None:
    m = await at_the_mark(journal)
    bus, slow, waiting = m.bus, m.slow, m.waiting
    stopping = asyncio.create_task(bus.stop())
    await settle()
    assert not stopping.done()
    for release in range(3):
        slow.releases[release].set()
        if release < 2:
            await slow.next_batch()
    await asyncio.wait_for(asyncio.gather(waiting, stopping), 5)
    await asyncio.wait_for(bus.stop(), 5)
    assert slow.seen() == ["r0", "r1", "r2", "r3", "r4"]


async def test_a_cancelled_consumer_lets_publishers_go_and_loses_nothing(
        journal: Journal) -> None:
    m = await at_the_mark(journal)
    bus, slow, waiting = m.bus, m.slow, m.waiting
    (consumer,) = [t for t in asyncio.all_tasks() if t.get_name() == "bus subscriber"]
    consumer.cancel()  # e.g. the loop shutting down
    await asyncio.wait_for(waiting, 5)  # nobody works the backlog off: nobody waits for it
    await slow.next_batch()  # r4's publish started a new consumer: r1..r4 in one batch
    slow.releases[1].set()
    await asyncio.wait_for(bus.stop(), 5)
    assert [reasons(b) for b in slow.batches] == [["r0"], ["r1", "r2", "r3", "r4"]]


async def test_a_subscriber_that_publishes_from_its_consumer_never_waits_on_itself(
        journal: Journal) -> None:
    bus = EventBus(journal.append, high_water=2, low_water=1)
    got: list[str] = []

    async def echo(batch: list[Published]) -> None:
        for reason in reasons(batch):
            got.append(reason)
            if "echo" not in reason:
                for n in range(3):  # more than the mark, from the consumer itself
                    await bus.publish(hold(f"echo {reason} {n}"))

    bus.subscribe(unsubscribed_one, queued=True, batch=echo)
    for i in range(3):
        await asyncio.wait_for(bus.publish(hold(i)), 5)
    await asyncio.wait_for(bus.stop(), 5)
    assert sorted(got) == sorted([f"r{i}" for i in range(3)]
                                 + [f"recho r{i} {n}" for i in range(3) for n in range(3)])
    journaled = [r.payload["reason"] for r in await journal.rows()]
    assert got == journaled  # in journal order, each once


async def test_a_later_event_is_never_delivered_before_an_intent_still_committing(
        journal: Journal) -> None:
    """Publish order is the journal's order even when an intent's append (it waits for its
    commit) ends after a later event's: the subscriber's 'everything up to seq N' holds."""
    bus = EventBus(journal.append)
    got: list[Published] = []

    async def collect(batch: list[Published]) -> None:
        got.extend(batch)

    bus.subscribe(unsubscribed_one, queued=True, batch=collect)
    intent = asyncio.create_task(bus.publish(ev.CancelIntent(
        account="paper", symbol=BTC, order_id="1", client_id=None, reason="duplicate")))
    await asyncio.sleep(0)  # the intent has its id and waits for its commit
    await bus.publish(hold(1))  # returns at once (not durable)
    await asyncio.wait_for(intent, 5)
    await asyncio.wait_for(bus.stop(), 5)
    assert [(p.seq, p.event.kind) for p in got] == [(1, "cancel_intent"), (2, "hold_set")]


@pytest.mark.parametrize(("high", "low"), [(4, 4), (4, 5), (4, 0)])
def test_bad_marks_are_refused(journal: Journal, high: int, low: int) -> None:
    with pytest.raises(ValueError, match=f"1 <= low_water < high_water, got low_water={low}, "
                                         f"high_water={high}"):
        EventBus(journal.append, high_water=high, low_water=low)


async def test_the_engine_exports_the_backlog_on_its_metrics(tmp_path: Path) -> None:
    from engine.clock import ManualClock
    from vigil.runtime import Engine
    from vigil.settings import load_settings

    engine = await Engine.build(load_settings(None, data_dir=tmp_path / "data"), ManualClock())
    try:
        slow = SlowBatch()
        engine.bus.subscribe(unsubscribed_one, batch=slow)
        for i in range(3):
            await engine.bus.publish(hold(i))
        registry = engine.metrics.registry
        # The stand-in's three, and those of any other queued subscriber still to run.
        assert registry.get_sample_value("vigil_bus_backlog") == engine.bus.backlog() >= 3
        assert registry.get_sample_value("vigil_bus_publish_waits_total") == 0
        slow.open()
        await asyncio.wait_for(engine.bus.stop(), 5)
        assert slow.seen() == ["r0", "r1", "r2"]
        assert registry.get_sample_value("vigil_bus_backlog") == 0
    finally:
        await engine.close()
