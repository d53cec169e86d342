"""bench/composed_venue.py in its short form: the composed runtime (engine, notifier over the
fake Bot API, logging as deployed) on each real ccxt dialect, its HTTP intercepted at `fetch`,
over a book of 120 positions that each already have their stop, and (its --missing variant) a
book of 12 without them (issue 16).

Structure, not timing: every position and its stop is adopted, nothing is sent to the venue, and
each steady cycle asks exactly the pages the venue's paging needs; without stops, each position
gets exactly one, and none is sent again once the venue lists them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from bench.composed_venue import DIALECTS, run_book

SIZE = 120  # past a Bybit order page (50) and a Bitget plan-order page (100)
# requests per snapshot: one positions listing (Bybit pages 200, the others list all), plus
# the stops: Binance all at once, Bybit 3 pages of 50, Bitget 2 pages of 100
SNAPSHOT_REQUESTS = {"binanceusdm": 2, "bybit": 1 + 3, "bitget": 1 + 2}


@pytest.fixture(autouse=True)
def default_logging() -> Iterator[None]:
    """The runtime sets up logging as deployed; later tests get loguru's default back."""
    yield
    logger.remove()
    logger.configure(patcher=None)
    logger.add(sys.stderr)


@pytest.mark.parametrize("dialect", list(DIALECTS))
async def test_the_runtime_adopts_a_protected_book_and_sends_nothing(
        tmp_path: Path, dialect: str) -> None:
    f = await run_book(tmp_path, dialect, SIZE, cycles=1, latency_ms=0)

    assert (f["positions"], f["adopted"], f["stops_adopted"]) == (SIZE, SIZE, SIZE)
    assert f["every_position_protected"] is True
    # each already had its stop: no intent journaled, no order sent, nothing reported missing
    assert (f["orders_sent"], f["intents"], f["stop_missing"]) == (0, 0, 0)
    assert f["cycle_requests"] == f["cycle_venue_calls"] == SNAPSHOT_REQUESTS[dialect]
    # start-up (markets, account checks, ledger) comes on top of the first snapshot
    assert f["first_cycle_requests"] > SNAPSHOT_REQUESTS[dialect]
    assert f["snapshot_weight"] > 0
    for key in ("first_cycle_s", "first_cycle_lag_max_ms", "first_cycle_busy_max_ms",
                "cycle_wall_ms", "cycle_cpu_ms", "cycle_lag_max_ms", "cycle_busy_max_ms",
                "cycle_budget_wait_s"):
        assert f[key] >= 0, key
    assert (f["stops_placed"], f["orders_after_first_cycle"], f["ttp_max_s"]) == (0, 0, None)
    assert f["first_cycle_busy_max_ms"] <= f["first_cycle_lag_max_ms"]
    assert f["cycle_busy_max_ms"] <= f["cycle_lag_max_ms"]


@pytest.mark.parametrize("dialect", list(DIALECTS))
async def test_a_book_without_stops_gets_exactly_one_stop_per_position(
        tmp_path: Path, dialect: str) -> None:
    """The bench's --missing variant: the venue takes each placement into its listing."""
    size = 12  # the budget lets Bitget place 10 stops a second: small keeps the test short
    f = await run_book(tmp_path, dialect, size, cycles=1, latency_ms=0, protected=False)

    assert (f["adopted"], f["stops_adopted"], f["stops_placed"]) == (size, 0, size)
    assert f["every_position_protected"] is True
    assert (f["stop_missing"], f["intents"], f["orders_sent"]) == (size, size, size)
    assert f["orders_after_first_cycle"] == 0  # the placed stops are seen in the listing
    assert f["cycle_requests"] == f["cycle_venue_calls"] == 2
    assert 0 <= f["ttp_p50_s"] <= f["ttp_max_s"]
