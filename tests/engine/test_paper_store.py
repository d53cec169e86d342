"""Paper mode's exchange is durable (issue 14): its state lives in its own SQLite file in
data_dir, a restart of Vigil finds its positions and stops, and the demo is created once."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.clock import ManualClock
from engine.domain.reports import OrderKind, StopRequest
from engine.domain.values import OrderSide, PositionSide
from engine.errors import Rejected, RejectReason
from engine.sim.exchange import HandApi
from engine.sim.ledger import sim_ledger
from engine.sim.store import PaperStore, open_paper_exchange
from engine.sim.venue import SimVenue
from vigil.runtime import Engine
from vigil.settings import load_settings

SOL, ETH, BTC = "SOL/USDT:USDT", "ETH/USDT:USDT", "BTC/USDT:USDT"


async def _started(data_dir: Path, clock: ManualClock) -> Engine:
    engine = await Engine.build(load_settings(None, data_dir=data_dir), clock)
    await engine.start()
    return engine


async def test_a_hand_opened_position_and_its_stop_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    data = tmp_path / "data"
    engine = await _started(data, clock)
    try:
        sim = engine.sims["paper"]
        HandApi(sim).open(SOL, PositionSide.LONG, Decimal("3"))
        for guard in engine.guards.values():
            await guard.reconcile_now()
        stop = next(o for o in sim.open_orders() if o.symbol == SOL)
        assert stop.kind is OrderKind.STOP_LOSS and stop.qty == Decimal("3")
        demo_fills = len(sim.fills)
    finally:
        await engine.stop()
        await engine.close()

    again = await _started(data, clock)
    try:
        sim = again.sims["paper"]
        assert sim.positions[SOL].qty == Decimal("3")
        assert sim.positions[SOL].side is PositionSide.LONG
        assert [o for o in sim.open_orders() if o.symbol == SOL] == [stop]
        # the demo positions were not created a second time
        assert len(sim.fills) == demo_fills
        assert sorted(sim.positions) == [BTC, ETH, SOL]
        for guard in again.guards.values():
            report = await guard.reconcile_now()
            assert report.unprotected_after == ()
        # the same stop still protects SOL: nothing placed twice after the restart
        assert [o for o in sim.open_orders() if o.symbol == SOL] == [stop]
    finally:
        await again.stop()
        await again.close()


def test_the_store_restores_orders_fills_marks_and_keeps_ids_unique(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "paper.sqlite3"
    exchange, store = open_paper_exchange(path, clock, seed=3)
    hand = HandApi(exchange)
    hand.open(ETH, PositionSide.SHORT, Decimal("2"))
    stop = hand.place_stop(ETH, Decimal("3300"))
    exchange.set_mark(ETH, Decimal("3100.5"))
    hand.close(ETH, Decimal("0.5"))
    hand.place_old_stop(SOL, OrderSide.SELL, Decimal("1"), Decimal("140"), 600)
    exchange.set_mark(BTC, Decimal("64000"))  # no order event: saved by the checkpoint
    store.close()

    restored, store = open_paper_exchange(path, ManualClock(), seed=3)
    try:
        assert restored.positions[ETH].qty == Decimal("1.5")
        assert restored.positions[ETH].entry_price == exchange.positions[ETH].entry_price
        assert restored.orders == exchange.orders
        assert restored.fills == exchange.fills
        assert restored.marks == exchange.marks
        assert restored.realized_pnl == exchange.realized_pnl
        assert sim_ledger(restored, clock.now() - timedelta(days=1)) == sim_ledger(
            exchange, clock.now() - timedelta(days=1))
        # the client-id history survives: an id used before the restart is refused after it
        restored.place_trigger(symbol=ETH, side=OrderSide.BUY, qty=Decimal("1.5"),
                               trigger_price=Decimal("3400"), kind=OrderKind.STOP_LOSS,
                               client_id="vg-abc")
        with pytest.raises(Rejected) as refused:
            restored.place_trigger(symbol=ETH, side=OrderSide.BUY, qty=Decimal("1.5"),
                                   trigger_price=Decimal("3401"), kind=OrderKind.STOP_LOSS,
                                   client_id="vg-abc")
        assert refused.value.reason is RejectReason.DUPLICATE_CLIENT_ID
        new = HandApi(restored).open(SOL, PositionSide.LONG, Decimal("1"))
        assert int(new.order_id) > max(int(i) for i in exchange.orders)
        assert stop.order_id in restored.orders
    finally:
        store.close()


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite3"
    _, store = open_paper_exchange(path, ManualClock(), seed=1)
    store.conn.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    store.close()
    with pytest.raises(RuntimeError, match="schema 99"):
        PaperStore(path)


def _saved_orders(path: Path) -> int:
    """What another process would find in the file (a kill -9 loses the rest)."""
    with closing(sqlite3.connect(path)) as reader:
        return int(reader.execute("SELECT COUNT(*) FROM orders").fetchone()[0])


async def test_mutations_of_one_loop_turn_are_one_commit_made_before_any_answer(
        tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite3"
    exchange, store = open_paper_exchange(path, ManualClock(), seed=1)
    commits: list[str] = []
    store.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    try:
        before = _saved_orders(path)
        hand = HandApi(exchange)
        for symbol in (SOL, ETH, BTC):
            hand.open(symbol, PositionSide.LONG, Decimal("1"))
        assert commits == []  # nothing written inside the turn...
        await asyncio.sleep(0)
        assert commits == ["COMMIT"]  # ...and one transaction for all of it after it
        assert _saved_orders(path) == before + 3

        # An answer sent at once (no latency): what it reports is on disk when it arrives.
        venue = SimVenue(exchange, ManualClock())
        stop = await venue.place_stop(StopRequest(
            symbol=SOL, position_side=PositionSide.LONG, qty=Decimal("1"),
            trigger_price=Decimal("1"), client_id="vg-durable"))
        assert _saved_orders(path) == before + 4
        assert stop.client_id == "vg-durable"
    finally:
        store.close()


async def test_an_answer_after_latency_finds_the_turns_commit_already_made(
        tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite3"
    clock = ManualClock()
    exchange, store = open_paper_exchange(path, clock, seed=1)
    try:
        HandApi(exchange).open(SOL, PositionSide.LONG, Decimal("1"))
        await asyncio.sleep(0)
        before = _saved_orders(path)
        venue = SimVenue(exchange, clock, latency=0.05)
        seen: list[int] = []

        async def place() -> None:
            await venue.place_stop(StopRequest(
                symbol=SOL, position_side=PositionSide.LONG, qty=Decimal("1"),
                trigger_price=Decimal("1"), client_id="vg-later"))
            seen.append(_saved_orders(path))

        task = asyncio.create_task(place())
        await asyncio.sleep(0)  # on its way
        await clock.advance(0.025)  # the order reached the exchange: executed this turn
        assert "vg-later" in {o.client_id for o in exchange.open_orders()}
        assert _saved_orders(path) == before + 1  # the turn's commit, no answer needed
        await clock.advance(0.025)  # the answer travels back
        await task
        assert seen == [before + 1]
    finally:
        store.close()


async def test_a_commit_that_fails_keeps_its_rows_for_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite3"
    exchange, store = open_paper_exchange(path, ManualClock(), seed=1)
    try:
        before = _saved_orders(path)
        store.conn.execute("PRAGMA busy_timeout = 0")
        HandApi(exchange).open(SOL, PositionSide.LONG, Decimal("1"))
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")  # the disk refuses the write for now
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                exchange.save()  # what an answer would wait for: it fails loudly
            other.execute("ROLLBACK")
        exchange.save()
        assert _saved_orders(path) == before + 1
    finally:
        store.close()
