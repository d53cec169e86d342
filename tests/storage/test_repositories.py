"""PositionRepo and StateRepo over a real SQLite file: exact Decimals, aware datetimes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from engine.domain.position import GuardedPosition, PositionState, StopRef
from engine.domain.values import PositionSide
from storage.db import Database
from storage.repositories import PositionRepo, StateRepo
from tests.storage.conftest import scalar

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
MSK = timezone(timedelta(hours=3))


def protected_long() -> GuardedPosition:
    return GuardedPosition(
        account="main", symbol=BTC, side=PositionSide.LONG,
        qty=Decimal("0.500"),
        entry_price=Decimal("65000.123456789012345678901"),  # beyond float precision
        generation=4, state=PositionState.PROTECTED,
        stop=StopRef("4001", "vgs0123456789abcdef0123", Decimal("63700.10"), Decimal("0.500")),
        stop_seq=3, close_seq=1,
        opened_at=datetime(2026, 1, 5, 15, 0, 0, 123456, tzinfo=MSK),
        unprotected_since=None,
        last_time_to_protect=Decimal("0.731"))


def unprotected_short() -> GuardedPosition:
    return GuardedPosition(
        account="main", symbol=ETH, side=PositionSide.SHORT, qty=Decimal("2"),
        entry_price=Decimal("3300.55"), generation=1, state=PositionState.UNPROTECTED,
        opened_at=datetime(2026, 1, 5, 11, 59, tzinfo=UTC),
        unprotected_since=datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC))


async def test_position_round_trips_exactly(db: Database) -> None:
    repo = PositionRepo(db)
    original = protected_long()
    await repo.save(original)

    (loaded,) = await repo.load("main")

    assert loaded == original
    assert str(loaded.qty) == "0.500"
    assert str(loaded.entry_price) == "65000.123456789012345678901"
    assert loaded.stop == StopRef("4001", "vgs0123456789abcdef0123", Decimal("63700.10"),
                                  Decimal("0.500"))
    assert loaded.stop is not None and str(loaded.stop.trigger_price) == "63700.10"
    assert loaded.last_time_to_protect == Decimal("0.731")
    assert (loaded.side, loaded.state) == (PositionSide.LONG, PositionState.PROTECTED)
    assert (loaded.generation, loaded.stop_seq, loaded.close_seq) == (4, 3, 1)


async def test_datetimes_come_back_timezone_aware_and_equal(db: Database) -> None:
    repo = PositionRepo(db)
    await repo.save(protected_long())
    await repo.save(unprotected_short())

    btc, eth = await repo.load("main")

    assert btc.opened_at == datetime(2026, 1, 5, 12, 0, 0, 123456, tzinfo=UTC)
    assert btc.opened_at is not None and btc.opened_at.utcoffset() == timedelta(0)
    assert btc.unprotected_since is None
    assert eth.unprotected_since == datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC)
    assert eth.unprotected_since is not None and eth.unprotected_since.tzinfo is not None


async def test_numbers_are_stored_as_text(db: Database) -> None:
    await PositionRepo(db).save(protected_long())

    async with db.conn.execute(
            "SELECT typeof(qty), typeof(entry_price), typeof(stop_price), typeof(stop_qty),"
            " typeof(last_time_to_protect), qty, entry_price FROM positions") as cur:
        row = tuple(await cur.fetchone())

    assert row[:5] == ("text",) * 5
    assert row[5:] == ("0.500", "65000.123456789012345678901")


async def test_a_position_without_a_stop_and_a_whole_position_stop(db: Database) -> None:
    repo = PositionRepo(db)
    short = unprotected_short()
    await repo.save(short)
    (loaded,) = await repo.load("main")
    assert loaded == short and loaded.stop is None and loaded.last_time_to_protect is None

    whole = StopRef("9", None, Decimal("3400"), None)  # closePosition / pos_loss: no qty
    short.stop, short.state, short.unprotected_since = whole, PositionState.PROTECTED, None
    await repo.save(short)
    (loaded,) = await repo.load("main")
    assert loaded.stop == whole and loaded.stop is not None and loaded.stop.qty is None


async def test_save_replaces_and_delete_removes(db: Database) -> None:
    repo = PositionRepo(db)
    position = protected_long()
    await repo.save(position)
    position.qty = Decimal("0.7")
    position.stop_seq = 4
    await repo.save(position)

    (loaded,) = await repo.load("main")
    assert (loaded.qty, loaded.stop_seq) == (Decimal("0.7"), 4)
    assert await scalar(db, "SELECT COUNT(*) FROM positions") == 1

    await repo.delete("main", BTC)
    assert await repo.load("main") == []


async def test_load_is_per_account_and_ordered_by_symbol(db: Database) -> None:
    repo = PositionRepo(db)
    other = unprotected_short()
    other.account = "other"
    await repo.save(unprotected_short())  # ETH
    await repo.save(protected_long())  # BTC
    await repo.save(other)

    assert [p.symbol for p in await repo.load("main")] == [BTC, ETH]
    assert [(p.account, p.symbol) for p in await repo.load("other")] == [("other", ETH)]
    assert await repo.load("nobody") == []
    await repo.delete("other", ETH)
    assert [p.symbol for p in await repo.load("main")] == [BTC, ETH]


async def test_positions_survive_reopen(db_path: Path) -> None:
    first = await Database.open(db_path)
    try:
        await PositionRepo(first).save(protected_long())
    finally:
        await first.close()
    second = await Database.open(db_path)
    try:
        loaded = await PositionRepo(second).load("main")
    finally:
        await second.close()
    assert loaded == [protected_long()]


# --- StateRepo ----------------------------------------------------------------------------
async def test_state_get_put_json_values(db: Database) -> None:
    state = StateRepo(db)
    assert await state.get("hold", "main") is None
    assert await state.get("hold", "main", default="none") == "none"

    await state.put("hold", "main", {"reason": "drawdown", "by": 42})
    await state.put("lang", "42", "ru")
    await state.put("hold", "main", {"reason": "manual", "by": 7})  # upsert, not a second row

    assert await state.get("hold", "main") == {"reason": "manual", "by": 7}
    assert await state.get("lang", "42") == "ru"
    assert await state.get("lang", "main") is None  # the key is (scope, key)
    assert await scalar(db, "SELECT COUNT(*) FROM state") == 2
    await state.put("hold", "main", None)
    assert await state.get("hold", "main", default="x") is None  # a stored null is not missing


async def test_incr_counts_up_per_key(db: Database) -> None:
    state = StateRepo(db)

    assert [await state.incr("generation", "main|BTC") for _ in range(3)] == [1, 2, 3]
    assert await state.incr("generation", "main|ETH") == 1
    assert await state.incr("other", "main|BTC") == 1
    assert await state.get("generation", "main|BTC") == 3


async def test_incr_continues_from_a_put_value(db: Database) -> None:
    state = StateRepo(db)
    await state.put("generation", "k", 41)
    assert await state.incr("generation", "k") == 42


async def test_concurrent_incr_never_repeats_a_value(db: Database) -> None:
    state = StateRepo(db)
    values = await asyncio.gather(*(state.incr("generation", "k") for _ in range(20)))
    assert sorted(values) == list(range(1, 21))


async def test_incr_is_monotonic_across_reopen(db_path: Path) -> None:
    seen: list[int] = []
    for _ in range(3):
        db = await Database.open(db_path)
        try:
            state = StateRepo(db)
            seen.append(await state.incr("generation", "main|BTC"))
            seen.append(await state.incr("generation", "main|BTC"))
        finally:
            await db.close()
    assert seen == [1, 2, 3, 4, 5, 6]
