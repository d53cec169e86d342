"""A snapshot of a big book is parsed in turns of the event loop (issue 16): through the real ccxt
classes with HTTP intercepted at `fetch`, another task on the loop gets its turns while ccxt's
parse_* and our reports work through 2,000 positions and their 2,000 stops, and the snapshot
still holds every one of them.

The assertions are on structure, not time: how many rows were parsed between two turns of
another task. Each row passes once through ccxt's `safe_position` / `safe_order` (the last step
of every venue's parse_position / parse_order) and once through the dialect's `observe_position`
/ `observe_order` (our report of it); those calls are counted on their way through, unchanged."""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from engine.venues.turns import ROWS_PER_TURN, in_turns
from tests.venues.book import book_venue, client_id, symbols
from tests.venues.conftest import VENUES, Harness
from tests.venues.test_open_orders import binance_order

BOOK = 2000


class Rows:
    """How many rows ccxt and our reports have been through so far."""

    def __init__(self) -> None:
        self.count = 0

    def counting(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return method(*args, **kwargs)
        return counted


def count_rows(harness: Harness) -> Rows:
    rows, exchange, dialect = Rows(), harness.http, harness.venue.dialect
    for target, name in ((exchange, "safe_position"), (exchange, "safe_order"),
                         (dialect, "observe_position"), (dialect, "observe_order")):
        setattr(target, name, rows.counting(getattr(target, name)))
    return rows


async def turns_during(work: asyncio.Task[Any], rows: Rows) -> list[int]:
    """Another task on the loop: the rows counted at each of its turns until `work` is done."""
    seen: list[int] = []
    while not work.done():
        seen.append(rows.count)
        await asyncio.sleep(0)
    seen.append(rows.count)
    return seen


def largest_step(seen: list[int]) -> int:
    """The most rows parsed between two turns."""
    return max(b - a for a, b in itertools.pairwise(seen))


@pytest.mark.parametrize("name", VENUES)
async def test_another_task_runs_while_a_big_snapshot_is_parsed(name: str) -> None:
    harness = await book_venue(name, BOOK)
    rows = count_rows(harness)

    snapshot = asyncio.create_task(harness.venue.snapshot())
    seen = await turns_during(snapshot, rows)

    result = snapshot.result()
    assert sorted(p.symbol for p in result.positions) == symbols(BOOK)
    assert sorted(o.client_id for o in result.orders) == [client_id(i) for i in range(BOOK)]
    # each row through ccxt once and through our report once
    assert rows.count == 4 * BOOK
    # many turns: at least one per slice of the 4,000 ccxt parses and 4,000 reports, the
    # positions and the stops listing taking theirs side by side
    assert len(seen) > 4 * BOOK // (2 * ROWS_PER_TURN)
    # and between two turns at most a slice of each listing (it was all 8,000 in one piece)
    assert largest_step(seen) <= 2 * ROWS_PER_TURN
    await harness.venue.close()


async def test_open_orders_of_a_big_book_are_parsed_in_turns() -> None:
    harness = await book_venue("binance", 0)
    # 2,000 resting limit entries: GET /fapi/v1/openOrders, one answer
    harness.http.route("GET", "/fapi/v1/openOrders",
                       [binance_order(5_000_000 + i, f"lim{i:05d}", base="ETH")
                        for i in range(BOOK)])
    rows = count_rows(harness)

    listing = asyncio.create_task(harness.venue.fetch_open_orders())
    seen = await turns_during(listing, rows)

    assert sorted(o.client_id for o in listing.result()) == [f"lim{i:05d}" for i in range(BOOK)]
    assert rows.count == 2 * BOOK
    assert largest_step(seen) <= ROWS_PER_TURN
    await harness.venue.close()


async def test_a_listing_of_one_slice_is_parsed_at_once_and_slices_keep_their_order() -> None:
    rows = list(range(ROWS_PER_TURN * 3 + 1))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = ticks
    small = await in_turns(rows[:ROWS_PER_TURN], lambda chunk: [r * 2 for r in chunk])
    assert ticks == started  # no turn given away for a listing of one slice
    big = await in_turns(rows, lambda chunk: [r * 2 for r in chunk])
    assert ticks - started >= 4  # a turn before each of its four slices
    other.cancel()
    assert small == [r * 2 for r in rows[:ROWS_PER_TURN]]
    assert big == [r * 2 for r in rows]


async def test_a_slice_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="per_turn must be at least 1, not 0"):
        await in_turns([1, 2], list, per_turn=0)
