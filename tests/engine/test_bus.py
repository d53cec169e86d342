"""The bus: journal first; inline subscribers awaited in publish; queued ones (the runtime's
notifier) on their own consumer, in order, isolated from each other, drained by stop()."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pytest

from engine.bus import EventBus, Published
from engine.domain import events as ev
from storage.db import Database
from storage.journal import Journal, JournalWriteError

BTC = "BTC/USDT:USDT"


def hold(i: int) -> ev.HoldSet:
    return ev.HoldSet(account="paper", reason=f"r{i}", by="test")


def intent() -> ev.CancelIntent:
    return ev.CancelIntent(account="paper", symbol=BTC, order_id="1", client_id=None,
                           reason="duplicate")


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    db = await Database.open(tmp_path / "v.db")
    yield Journal(db, background=True, linger=3600)  # batches close only when someone waits
    await db.close()


def committed_kinds(journal: Journal) -> list[str]:
    with closing(sqlite3.connect(journal.db.path)) as conn:
        return [k for (k,) in conn.execute("SELECT kind FROM journal ORDER BY id")]


class Gate:
    """A slow subscriber: records what it got, and blocks until opened."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.got: list[str] = []

    async def __call__(self, event: ev.Event) -> None:
        await self.opened.wait()
        self.got.append(event.reason if isinstance(event, ev.HoldSet) else event.kind)


async def test_publish_does_not_wait_for_a_slow_queued_subscriber(journal: Journal) -> None:
    bus = EventBus(journal.append)
    slow = Gate()
    bus.subscribe(slow, queued=True)

    for i in range(3):
        await asyncio.wait_for(bus.publish(hold(i)), 5)

    assert slow.got == [] and bus.backlog() >= 2
    slow.opened.set()
    await asyncio.wait_for(bus.stop(), 5)
    assert slow.got == ["r0", "r1", "r2"] and bus.backlog() == 0  # in publish order


async def test_a_failing_queued_subscriber_stops_neither_itself_nor_the_others(
        journal: Journal) -> None:
    bus = EventBus(journal.append, queue_subscribers=True)  # the runtime's bus
    seen: list[str] = []

    async def broken(event: ev.Event) -> None:
        assert isinstance(event, ev.HoldSet)
        if event.reason == "r1":
            raise RuntimeError("notifier down")
        seen.append("broken " + event.reason)

    async def healthy(event: ev.Event) -> None:
        assert isinstance(event, ev.HoldSet)
        seen.append("healthy " + event.reason)

    bus.subscribe(broken)
    bus.subscribe(healthy)
    for i in range(3):
        await bus.publish(hold(i))
    await bus.stop()

    assert [s for s in seen if s.startswith("broken")] == ["broken r0", "broken r2"]
    assert [s for s in seen if s.startswith("healthy")] == ["healthy r0", "healthy r1",
                                                              "healthy r2"]


async def test_inline_subscribers_have_the_event_when_publish_returns(journal: Journal) -> None:
    bus = EventBus(journal.append)
    got: list[ev.Event] = []

    async def sink(event: ev.Event) -> None:
        got.append(event)

    unsubscribe = bus.subscribe(sink)
    await bus.publish(hold(0))
    assert [type(e) for e in got] == [ev.HoldSet]
    unsubscribe()
    await bus.publish(hold(1))
    assert len(got) == 1


async def test_an_intent_is_committed_when_publish_returns_other_events_are_not_waited_for(
        journal: Journal) -> None:
    bus = EventBus(journal.append)

    await bus.publish(hold(0))
    assert committed_kinds(journal) == []  # queued behind a batch nobody waits for
    await bus.publish(intent())
    assert committed_kinds(journal) == ["hold_set", "cancel_intent"]  # in order, one batch
    assert journal.batches == 1


async def test_stop_drains_and_the_bus_keeps_working_after_it(journal: Journal) -> None:
    bus = EventBus(journal.append, queue_subscribers=True)
    slow = Gate()
    slow.opened.set()
    bus.subscribe(slow)
    await bus.publish(hold(0))
    await bus.stop()
    await bus.publish(hold(1))
    await bus.stop()
    assert slow.got == ["r0", "r1"]


async def test_unsubscribing_a_queued_subscriber_drops_what_it_had_not_received(
        journal: Journal) -> None:
    bus = EventBus(journal.append)
    slow = Gate()
    unsubscribe = bus.subscribe(slow, queued=True)
    await bus.publish(hold(0))
    await bus.publish(hold(1))
    await asyncio.sleep(0)  # the consumer takes r0 and blocks in the subscriber
    unsubscribe()
    slow.opened.set()
    await bus.stop()
    await asyncio.sleep(0)
    assert slow.got == ["r0"] and bus.backlog() == 0


async def test_a_durable_publish_fails_when_its_journal_write_fails(journal: Journal) -> None:
    """The engine must not act on an intent that is not written: publish raises, and queued
    subscribers never hear of it."""
    bus = EventBus(journal.append, queue_subscribers=True)
    heard: list[str] = []

    async def listener(event: ev.Event) -> None:
        heard.append(event.kind)

    bus.subscribe(listener)
    await bus.publish(hold(0))
    await bus.stop()
    await journal.db.close()  # writes the queued hold; then the database is gone
    with pytest.raises(JournalWriteError, match="1 rows lost: Connection closed"):
        await bus.publish(intent())
    await bus.stop()
    assert heard == ["hold_set"]


async def test_decimal_payloads_survive_the_queue(journal: Journal) -> None:
    bus = EventBus(journal.append)
    await bus.publish(ev.StopMissing(account="paper", symbol=BTC, side="long",
                                     qty=Decimal("0.100000000000000000001")))
    (row,) = await journal.rows()
    event = row.event()
    assert isinstance(event, ev.StopMissing) and event.qty == Decimal("0.100000000000000000001")


async def test_the_engine_queues_its_subscribers_and_stop_delivers_and_writes_everything(
        tmp_path: Path) -> None:
    """The wiring in vigil/runtime.py: publish never waits for a subscriber (the notifier), the
    journal writes in the background, and Engine.stop drains both."""
    from engine.clock import ManualClock
    from vigil.runtime import Engine
    from vigil.settings import load_settings

    engine = await Engine.build(load_settings(None, data_dir=tmp_path / "data"), ManualClock())
    try:
        slow = Gate()
        engine.bus.subscribe(slow)
        assert engine.journal.background
        await asyncio.wait_for(engine.bus.publish(hold(0)), 5)
        assert slow.got == []
        slow.opened.set()
        await engine.stop()
        assert slow.got[0] == "r0" and "engine_stopped" in slow.got
        assert committed_kinds(engine.journal)[-2:] == ["hold_set", "engine_stopped"]
    finally:
        await engine.close()


async def test_a_batch_subscriber_gets_what_was_queued_meanwhile_at_once(
        journal: Journal) -> None:
    bus = EventBus(journal.append)
    calls: list[list[str]] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def one(event: ev.Event) -> None:
        raise AssertionError("a batch subscriber is not called one event at a time")

    async def many(events: list[Published]) -> None:
        calls.append([p.event.reason for p in events if isinstance(p.event, ev.HoldSet)])
        first_in.set()
        await release.wait()
        if len(calls) == 2:
            raise RuntimeError("a broken batch")  # logged; later batches still arrive

    bus.subscribe(one, queued=True, batch=many)
    await bus.publish(hold(0))
    await asyncio.wait_for(first_in.wait(), 5)
    for i in range(1, 4):  # published while the first batch is being written
        await bus.publish(hold(i))
    release.set()
    await asyncio.wait_for(bus.stop(), 5)
    await bus.publish(hold(4))
    await asyncio.wait_for(bus.stop(), 5)
    assert calls == [["r0"], ["r1", "r2", "r3"], ["r4"]]
