"""The request budget: protective requests never queue behind reads.

The venue tests run the real ccxt classes with `enableRateLimit` on, so ccxt computes each
endpoint's cost and calls its `throttle` hook, where our budget sits instead of ccxt's FIFO
leaky bucket (which made a Binance stop wait 2 s behind a 40-weight listing)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from engine.clock import ManualClock
from engine.domain.reports import StopRequest
from engine.domain.values import PositionSide
from engine.errors import Transient
from engine.metrics import Metrics
from engine.venues.budget import BudgetLimits, Lane, RequestBudget
from engine.venues.dialects import BinanceDialect, BybitDialect
from tests.venues import payloads as p
from tests.venues.conftest import VENUES, Account, Reply, Request, build

BTC = "BTC/USDT:USDT"
CID = "vgs0123456789abcdef0123"
BINANCE = BinanceDialect.budget  # 2,400 a minute, 240 of it kept for the priority lane
# ccxt's cost of one snapshot (positions + every resting stop): Binance GET /fapi/v3/positionRisk
# 1 (ccxt; Binance documents 5) + GET /fapi/v1/openAlgoOrders without a symbol 40;
# Bybit 5 + 5; Bitget 4 + 2.
SNAPSHOT_WEIGHT = {"binance": 41.0, "bybit": 10.0, "bitget": 6.0}


def stop() -> StopRequest:
    return StopRequest(BTC, PositionSide.LONG, Decimal("0.01"), Decimal("60000"), CID)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


# --- the budget alone, on a manual clock --------------------------------------------------------
async def test_reads_wait_for_the_window_while_a_stop_goes_at_once() -> None:
    clock = ManualClock()
    budget = RequestBudget("binance", BINANCE, clock)
    await budget.acquire(BINANCE.limit - BINANCE.reserve, Lane.READ)  # the read share, spent

    read = asyncio.create_task(budget.acquire(40, Lane.READ))
    await settle()
    await asyncio.wait_for(budget.acquire(1, Lane.PRIORITY), 0.5)  # no wait at all

    assert not read.done()
    await clock.advance(59.9)
    assert not read.done()
    await clock.advance(0.1)  # the first reads leave the 60 s window
    await asyncio.wait_for(read, 0.5)
    stats = budget.stats()
    assert stats.priority_wait_max == 0 and stats.read_wait_total == pytest.approx(60)
    assert stats.used == 40 and stats.spent == {Lane.READ: 2200, Lane.PRIORITY: 1}


async def test_a_read_yields_to_a_waiting_protective_request() -> None:
    clock = ManualClock()
    budget = RequestBudget("binance", BINANCE, clock)
    await budget.acquire(2100, Lane.READ)
    order: list[str] = []

    async def take(name: str, weight: float, lane: Lane) -> None:
        await budget.acquire(weight, lane)
        order.append(name)

    stop_task = asyncio.create_task(take("stop", 400, Lane.PRIORITY))  # 2100 + 400 > 2400
    await settle()
    read_task = asyncio.create_task(take("read", 10, Lane.READ))  # would fit the read share
    await settle()
    assert order == []  # the read does not slip in ahead of the waiting stop

    await clock.advance(60)
    await asyncio.wait_for(asyncio.gather(stop_task, read_task), 0.5)
    assert order == ["stop", "read"]
    assert budget.stats().priority_wait_max == pytest.approx(60)


async def test_a_request_heavier_than_the_room_still_goes_through_an_empty_window() -> None:
    budget = RequestBudget("x", BudgetLimits(limit=20, window=1, reserve=4, source="test"),
                           ManualClock())
    await asyncio.wait_for(budget.acquire(30, Lane.READ), 0.5)
    assert budget.stats().used == 30


@pytest.mark.parametrize(("limit", "window", "reserve"), [(10, 1, 0), (10, 1, 10), (10, 0, 2)])
def test_limits_that_leave_no_lane_are_refused(limit: float, window: float,
                                               reserve: float) -> None:
    with pytest.raises(ValueError, match="bad budget limits"):
        BudgetLimits(limit=limit, window=window, reserve=reserve, source="test")


# --- the venues, with ccxt's throttle hook on ---------------------------------------------------
@pytest.mark.parametrize("name", VENUES)
async def test_the_stop_leaves_at_once_after_a_full_snapshot(name: str) -> None:
    account = Account(positions=[p.long_position(name, "BTC")],
                      stops=[p.resting_stop(name, str(1000 + i), f"vgs{i}", base)
                             for i, base in enumerate(p.BASES[2:40])])
    harness = await build(name, account=account, rate_limit=True)
    left_at: list[float] = []

    def placed(_request: Request) -> object:
        left_at.append(time.perf_counter())
        return p.placed(name, "77", CID)

    harness.http.route(*p.PLACE_STOP[name], placed)
    snapshot = await harness.venue.snapshot()
    opened = time.perf_counter()  # a position opens right after the snapshot
    await harness.venue.place_stop(stop())
    await harness.venue.close()

    assert left_at[0] - opened < 0.1
    assert harness.clock.slept == []  # type: ignore[attr-defined]  # the budget never waited
    assert snapshot.weight == SNAPSHOT_WEIGHT[name]
    stats = harness.venue.budget.stats()
    assert stats.snapshot_weight == SNAPSHOT_WEIGHT[name]
    assert stats.last_weight["place_stop"] > 0 and stats.spent[Lane.PRIORITY] > 0


async def test_under_a_spent_read_share_the_stop_overtakes_the_snapshot() -> None:
    clock = ManualClock()
    account = Account(positions=[p.long_position("binance", "BTC")])
    harness = await build("binance", account=account, rate_limit=True, clock=clock)
    harness.http.route(*p.PLACE_STOP["binance"], p.placed("binance", "77", CID))
    budget = harness.venue.budget
    # reads have spent all but 10 of their share: the 40-weight listing must wait
    await budget.acquire(BINANCE.limit - BINANCE.reserve - budget.stats().used - 10, Lane.READ)

    snapshot = asyncio.create_task(harness.venue.snapshot())
    await settle()
    await asyncio.wait_for(harness.venue.place_stop(stop()), 0.5)
    assert not snapshot.done()
    paths = [r.path for r in harness.http.requests]
    assert "/fapi/v1/algoOrder" in paths and "/fapi/v1/openAlgoOrders" not in paths

    await clock.advance(BINANCE.window)
    taken = await asyncio.wait_for(snapshot, 0.5)
    await harness.venue.close()
    assert taken.weight == SNAPSHOT_WEIGHT["binance"]
    assert budget.stats().priority_wait_max == 0


async def test_an_exchange_built_without_rate_limit_is_not_budgeted() -> None:
    harness = await build("bybit")  # enableRateLimit off: ccxt never calls the hook
    snapshot = await harness.venue.snapshot()
    await harness.venue.close()
    assert snapshot.weight == 0 and harness.venue.budget.stats().used == 0


# --- the figures, for /status and Prometheus ----------------------------------------------------
async def test_stats_give_the_weight_per_cycle_and_the_poll_headroom() -> None:
    harness = await build("binance", rate_limit=True)
    await harness.venue.snapshot()
    stats = harness.venue.budget.stats()
    await harness.venue.close()

    assert stats.snapshot_weight == 41
    assert stats.min_poll_interval == pytest.approx(60 * 41 / 2160)  # 1.14 s


async def test_metrics_export_the_budget_at_each_scrape() -> None:
    harness = await build("bitget", rate_limit=True)
    metrics = Metrics()
    metrics.track_budget("main", harness.venue.budget.stats)
    sample = metrics.registry.get_sample_value

    before = sample("vigil_venue_weight_spent_total", {"account": "main", "lane": "read"})
    await harness.venue.snapshot()
    harness.http.route(*p.PLACE_STOP["bitget"], p.placed("bitget", "77", CID))
    await harness.venue.place_stop(stop())
    await harness.venue.close()

    assert sample("vigil_venue_operation_weight",
                  {"account": "main", "operation": "snapshot"}) == 6
    assert sample("vigil_venue_weight_spent_total",
                  {"account": "main", "lane": "read"}) == before + 6
    assert sample("vigil_venue_weight_spent_total",
                  {"account": "main", "lane": "priority"}) == 2  # place-tpsl-order
    assert sample("vigil_venue_weight_limit", {"account": "main"}) == 20
    assert sample("vigil_venue_min_poll_interval_seconds", {"account": "main"}) == 6 / 16


# --- Binance's own count: X-MBX-USED-WEIGHT-1M, as ccxt keeps it in last_response_headers ------
def counted(body: object, used: int, header: str = "X-MBX-USED-WEIGHT-1M") -> Reply:
    return Reply(200, body, {header: str(used), "Content-Type": "application/json"})


@pytest.mark.parametrize("header", ["X-MBX-USED-WEIGHT-1M", "x-mbx-used-weight-1m"])
async def test_binances_count_of_the_ip_corrects_ours_and_reads_then_wait(header: str) -> None:
    clock = ManualClock()
    account = Account(positions=[p.long_position("binance", "BTC")])
    harness = await build("binance", account=account, rate_limit=True, clock=clock)
    harness.http.route(*p.PLACE_STOP["binance"], p.placed("binance", "77", CID))
    budget = harness.venue.budget
    ours = budget.stats().used  # start-up: markets and the account's position mode
    assert ours < 100 and budget.stats().venue_used is None  # no header seen yet
    # another program on the same IP has spent most of the minute
    harness.http.route(*p.POSITIONS["binance"], counted([account.positions[0]], 2100, header))
    harness.http.route("GET", "/fapi/v1/openAlgoOrders", counted([], 2140, header))

    await harness.venue.snapshot()
    assert budget.stats().used == 2140 and budget.stats().venue_used == 2140

    # the next snapshot's listing (40) would pass the read share (2,160): it waits...
    snapshot = asyncio.create_task(harness.venue.snapshot())
    await settle()
    assert not snapshot.done()
    # ...while the stop (the reserve is the priority lane's) leaves at once
    await asyncio.wait_for(harness.venue.place_stop(stop()), 0.5)
    await clock.advance(BINANCE.window)
    await asyncio.wait_for(snapshot, 0.5)
    await harness.venue.close()
    assert budget.stats().priority_wait_max == 0 and budget.stats().read_wait_total > 0


async def test_a_lower_count_from_binance_never_lowers_ours() -> None:
    # a lower figure may just not count our requests in flight yet
    account = Account(positions=[p.long_position("binance", "BTC")])
    harness = await build("binance", account=account, rate_limit=True, clock=ManualClock())
    harness.http.route(*p.POSITIONS["binance"], counted([account.positions[0]], 0))
    before = harness.venue.budget.stats().used
    await harness.venue.snapshot()
    await harness.venue.close()
    stats = harness.venue.budget.stats()
    assert stats.venue_used == 0 and stats.used == before + SNAPSHOT_WEIGHT["binance"]


async def test_a_429_carries_binances_count_too() -> None:
    clock = ManualClock()
    harness = await build("binance", rate_limit=True, clock=clock)
    harness.http.route(*p.POSITIONS["binance"], Reply(
        429, p.binance_error(-1003, "Too many requests; current limit is 2400 per minute."),
        {"X-MBX-USED-WEIGHT-1M": "2400"}))

    snapshot = asyncio.create_task(harness.venue.snapshot())
    await settle()
    # the positions call got its 429; the snapshot's other read waits out the venue's window
    assert harness.venue.budget.stats().used == 2400
    assert not snapshot.done()
    await clock.advance(BINANCE.window)
    with pytest.raises(Transient):
        await asyncio.wait_for(snapshot, 0.5)
    await harness.venue.close()


@pytest.mark.parametrize("value", ["", "lots", "-5"])
async def test_a_header_that_is_no_count_is_ignored(value: str) -> None:
    budget = RequestBudget("binance", BINANCE, ManualClock())
    await budget.acquire(10, Lane.READ)
    budget.observe({"X-MBX-USED-WEIGHT-1M": value})
    assert budget.stats().used == 10 and budget.stats().venue_used is None


async def test_venues_without_the_header_ignore_response_headers() -> None:
    budget = RequestBudget("bybit", BybitDialect.budget, ManualClock())
    budget.observe({"X-MBX-USED-WEIGHT-1M": "45"})
    assert budget.stats().used == 0 and budget.stats().venue_used is None
