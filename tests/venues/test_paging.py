"""Snapshots of a big book through the real ccxt classes, paged as each venue pages: every
position and every stop past page 1 is seen, in the calls the paging needs (issue 16 item 8)."""

from __future__ import annotations

import math

import pytest

from tests.venues.book import (
    BITGET_PLAN_ORDERS,
    BYBIT_ORDERS,
    BYBIT_POSITIONS,
    FIRST_ORDER_ID,
    book_venue,
    client_id,
    symbols,
)
from tests.venues.conftest import VENUES


def expected_calls(venue: str, n: int) -> int:
    """One call per page; a full last page costs one more (the venue's only end signal is a
    short page, or Bybit's empty cursor, which the last full page already carries)."""
    if venue == "binance":
        return 2
    if venue == "bybit":
        return max(1, math.ceil(n / BYBIT_POSITIONS[0])) + max(1, math.ceil(n / BYBIT_ORDERS[0]))
    return 1 + n // BITGET_PLAN_ORDERS[0] + 1


@pytest.mark.parametrize("n", [1, 100, 250])
@pytest.mark.parametrize("name", VENUES)
async def test_a_snapshot_sees_every_position_and_every_stop_past_page_one(
        name: str, n: int) -> None:
    harness = await book_venue(name, n)
    mark = harness.mark()

    snapshot = await harness.venue.snapshot()

    assert sorted(p.symbol for p in snapshot.positions) == symbols(n)
    assert sorted(o.client_id for o in snapshot.orders) == [client_id(i) for i in range(n)]
    assert {o.symbol for o in snapshot.orders} == set(symbols(n))
    assert snapshot.calls == len(harness.since(mark)) == expected_calls(name, n)
    await harness.venue.close()


async def test_bybit_follows_both_cursors() -> None:
    harness = await book_venue("bybit", 250)
    mark = harness.mark()

    await harness.venue.snapshot()

    sent = harness.since(mark)
    positions = [r.params.get("cursor") for r in sent if r.path == "/v5/position/list"]
    orders = [r.params.get("cursor") for r in sent if r.path == "/v5/order/realtime"]
    assert positions == [None, "200"]
    assert orders == [None, "50", "100", "150", "200"]
    await harness.venue.close()


async def test_bitget_pages_down_by_id_to_the_oldest_stop() -> None:
    harness = await book_venue("bitget", 250)
    mark = harness.mark()

    await harness.venue.snapshot()

    below = [r.params.get("idLessThan") for r in harness.since(mark)
             if r.path == "/api/v2/mix/order/orders-plan-pending"]
    assert below == [None, str(FIRST_ORDER_ID + 150), str(FIRST_ORDER_ID + 50)]
    await harness.venue.close()
