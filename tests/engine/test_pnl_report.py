"""Daily PnL: the ledger table (idempotent adds, sums, local-day series), the pure report
computation, the simulated exchange's ledger and the ledger sync, on real SQLite files."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from engine.clock import ManualClock
from engine.control import ControlService, PositionView
from engine.domain.ledger import LedgerEntry, LedgerKind
from engine.domain.values import PositionSide
from engine.errors import Transient
from engine.pnl.ledger_sync import LedgerSync
from engine.pnl.model import DayTotals
from engine.pnl.report import SymbolPnl, account_pnl, calendar_period
from engine.pnl.service import PnlReports
from engine.sim.exchange import HandApi, SimExchange
from engine.sim.ledger import sim_ledger
from storage.db import Database
from storage.ledger import LedgerRepo

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
MSK = ZoneInfo("Europe/Moscow")  # UTC+3, no DST
BERLIN = ZoneInfo("Europe/Berlin")
PNL, FEE, FUNDING = LedgerKind.REALIZED_PNL, LedgerKind.FEE, LedgerKind.FUNDING
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # ManualClock's default start


def e(ref: str, kind: LedgerKind, amount: str, at: datetime, symbol: str | None = BTC
      ) -> LedgerEntry:
    return LedgerEntry(ref=ref, symbol=symbol, kind=kind, amount=Decimal(amount), at=at)


@pytest.fixture
def repo(db: Database) -> LedgerRepo:
    return LedgerRepo(db)


# --- the ledger table ---------------------------------------------------------------------------
async def test_adding_the_same_movement_twice_stores_it_once(repo: LedgerRepo) -> None:
    first = [e("a", PNL, "10", NOW - timedelta(hours=2)), e("b", FEE, "-0.5", NOW)]
    assert await repo.add("acct", first) == 2
    assert await repo.add("acct", [*first, e("c", FUNDING, "0.1", NOW)]) == 1
    assert await repo.add("other", first) == 2  # refs are per account
    assert await repo.add("acct", []) == 0
    assert await repo.last_at("acct") == NOW
    assert await repo.last_at("nobody") is None
    stored = await repo.entries("acct", NOW - timedelta(days=1), NOW + timedelta(seconds=1))
    assert [(x.ref, x.amount) for x in stored] == [("a", Decimal("10")), ("b", Decimal("-0.5")),
                                                   ("c", Decimal("0.1"))]
    assert all(isinstance(x.amount, Decimal) and x.at.tzinfo is UTC for x in stored)


async def test_sums_per_symbol_and_kind_over_a_half_open_period(repo: LedgerRepo) -> None:
    start, end = NOW - timedelta(days=1), NOW
    await repo.add("acct", [
        e("before", PNL, "100", start - timedelta(microseconds=1)),  # outside
        e("first", PNL, "12.5", start),  # the start is inside
        e("p2", PNL, "-2.25", start + timedelta(hours=5)),
        e("f1", FEE, "-0.0125", start + timedelta(hours=5)),
        e("f2", FEE, "-0.0375", start + timedelta(hours=6)),
        e("eth-funding", FUNDING, "0.3", start + timedelta(hours=8), symbol=ETH),
        e("bonus", FUNDING, "0.01", start + timedelta(hours=9), symbol=None),
        e("end", PNL, "1000", end),  # the end is outside
    ])
    await repo.add("other", [e("x", PNL, "7", start + timedelta(hours=1))])

    sums = await repo.sums("acct", start, end)

    assert sums == {
        BTC: {PNL: Decimal("10.25"), FEE: Decimal("-0.05")},
        ETH: {FUNDING: Decimal("0.3")},
        None: {FUNDING: Decimal("0.01")},
    }
    assert sums[BTC][FEE] == Decimal("-0.0500")  # exact: Decimal all the way, no floats


async def test_daily_series_buckets_by_local_day_in_moscow(repo: LedgerRepo) -> None:
    # 2026-01-04 20:59 UTC is 23:59 in Moscow; 21:00 UTC is already the 5th there.
    await repo.add("acct", [
        e("late", PNL, "5", datetime(2026, 1, 4, 20, 59, tzinfo=UTC)),
        e("midnight", PNL, "7", datetime(2026, 1, 4, 21, 0, tzinfo=UTC)),
        e("fee", FEE, "-1", datetime(2026, 1, 5, 11, 0, tzinfo=UTC)),
        e("fund", FUNDING, "0.5", datetime(2026, 1, 1, 3, 0, tzinfo=UTC)),
        e("too-old", PNL, "99", datetime(2025, 12, 6, 20, 59, tzinfo=UTC)),  # Dec 6 23:59 MSK
        e("oldest", PNL, "1", datetime(2025, 12, 6, 21, 0, tzinfo=UTC)),  # Dec 7 00:00 MSK
    ])

    days = await repo.daily("acct", 30, MSK, NOW)

    assert len(days) == 30
    assert days[0].day == date(2025, 12, 7) and days[-1].day == date(2026, 1, 5)  # today last
    assert [d.day for d in days] == [date(2025, 12, 7) + timedelta(days=i) for i in range(30)]
    by_day = {d.day: d for d in days}
    assert by_day[date(2026, 1, 4)] == DayTotals(date(2026, 1, 4), realized=Decimal("5"))
    assert by_day[date(2026, 1, 5)] == DayTotals(date(2026, 1, 5), Decimal("7"), Decimal("-1"))
    assert by_day[date(2026, 1, 5)].net == Decimal("6")
    assert by_day[date(2026, 1, 1)].funding == Decimal("0.5")
    assert by_day[date(2025, 12, 7)].realized == Decimal("1")
    assert by_day[date(2026, 1, 2)] == DayTotals(date(2026, 1, 2))  # a gap is a zero day
    assert sum(d.net for d in days) == Decimal("12.5")  # "too-old" is not in the window

    in_utc = {d.day: d for d in await repo.daily("acct", 30, UTC, NOW)}
    assert in_utc[date(2026, 1, 4)].realized == Decimal("12")  # both on the 4th in UTC


async def test_daily_series_across_a_dst_change(repo: LedgerRepo) -> None:
    # Berlin moves to summer time on 2026-03-29: that day has 23 hours.
    now = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)
    await repo.add("acct", [
        e("a", PNL, "1", datetime(2026, 3, 29, 21, 59, tzinfo=UTC)),  # 23:59 CEST, the 29th
        e("b", PNL, "2", datetime(2026, 3, 29, 22, 0, tzinfo=UTC)),  # 00:00 CEST, the 30th
        e("c", PNL, "4", datetime(2026, 3, 28, 23, 0, tzinfo=UTC)),  # 00:00 CET, the 29th
    ])
    by_day = {d.day: d.realized for d in await repo.daily("acct", 3, BERLIN, now)}
    assert by_day == {date(2026, 3, 28): 0, date(2026, 3, 29): Decimal("5"),
                      date(2026, 3, 30): Decimal("2")}


# --- the pure report ----------------------------------------------------------------------------
def test_calendar_period_is_local_days_up_to_now() -> None:
    start, end = calendar_period(NOW, MSK, 1)
    assert (start, end) == (datetime(2026, 1, 5, 0, 0, tzinfo=MSK), NOW.astimezone(MSK))
    assert start.astimezone(UTC) == datetime(2026, 1, 4, 21, 0, tzinfo=UTC)
    start, _ = calendar_period(NOW, MSK, 7)
    assert start == datetime(2025, 12, 30, 0, 0, tzinfo=MSK)
    with pytest.raises(ValueError):
        calendar_period(NOW, MSK, 0)


def test_account_figures_per_symbol_with_unrealized_now() -> None:
    sums = {BTC: {PNL: Decimal("12.5"), FEE: Decimal("-0.05")},
            ETH: {FUNDING: Decimal("-0.4")},
            None: {FEE: Decimal("0.01")}}
    open_positions = [(BTC, Decimal("-3.2")), ("SOL/USDT:USDT", Decimal("1.5"))]

    a = account_pnl("main", "bybit", sums, open_positions, [])

    assert a.symbols == (
        SymbolPnl(BTC, Decimal("12.5"), Decimal("-0.05"), Decimal(0), Decimal("-3.2")),
        SymbolPnl(ETH, funding=Decimal("-0.4")),
        SymbolPnl("SOL/USDT:USDT", unrealized=Decimal("1.5")),  # open, nothing realized yet
        SymbolPnl(None, fees=Decimal("0.01")),  # not tied to a market: last
    )
    assert (a.realized, a.fees, a.funding) == (Decimal("12.5"), Decimal("-0.04"),
                                               Decimal("-0.4"))
    assert a.net == Decimal("12.06")  # realized + fees + funding; unrealized is apart
    assert a.unrealized == Decimal("-1.7")
    assert a.symbols[0].net == Decimal("12.45")
    assert a.currency == "USDT" and a.error is None


# --- the simulated exchange's ledger ------------------------------------------------------------
async def test_sim_ledger_has_a_fee_per_fill_and_pnl_per_closing_fill() -> None:
    clock = ManualClock(NOW)
    exchange = SimExchange(clock, seed=3)
    hand = HandApi(exchange)
    hand.open(BTC, PositionSide.LONG, Decimal("0.1"))
    await clock.advance(3600)
    exchange.set_mark(BTC, Decimal("66000"))
    hand.close(BTC)

    opening, closing = exchange.fills
    entries = sim_ledger(exchange, NOW)

    assert [(x.ref, x.kind, x.amount, x.at) for x in entries] == [
        (f"{opening.order_id}:fee", FEE, -opening.fee, NOW),
        (f"{closing.order_id}:pnl", PNL, closing.realized_pnl, NOW + timedelta(hours=1)),
        (f"{closing.order_id}:fee", FEE, -closing.fee, NOW + timedelta(hours=1)),
    ]
    assert closing.realized_pnl > 0 and opening.fee > 0
    assert [x.ref for x in sim_ledger(exchange, NOW + timedelta(minutes=30))] == [
        f"{closing.order_id}:pnl", f"{closing.order_id}:fee"]
    assert sum(x.amount for x in entries) == exchange.realized_pnl - exchange.fees_paid


# --- syncing ------------------------------------------------------------------------------------
@dataclass
class FakeVenue:
    """A venue that only answers fetch_ledger, from a list, and records what it was asked."""

    entries: list[LedgerEntry] = field(default_factory=list)
    name: str = "fake"
    asked: list[datetime] = field(default_factory=list)
    failure: Exception | None = None

    async def fetch_ledger(self, since: datetime) -> list[LedgerEntry]:
        self.asked.append(since)
        if self.failure is not None:
            raise self.failure
        return [x for x in self.entries if x.at >= since]


async def test_sync_is_incremental_idempotent_and_isolates_failures(repo: LedgerRepo) -> None:
    clock = ManualClock(NOW)
    good = FakeVenue([e("a", PNL, "10", NOW - timedelta(days=40)),  # beyond the lookback
                      e("b", FEE, "-1", NOW - timedelta(days=2))])
    broken = FakeVenue(failure=Transient("venue down"))
    venues = cast(Any, {"good": good, "broken": broken})
    sync = LedgerSync(venues, repo, clock)

    results = await sync.sync_now()

    assert good.asked == [NOW - timedelta(days=31)]  # the first sync goes back 31 days
    assert results["good"].added == 1 and results["good"].error is None
    assert results["broken"].error == "Transient: venue down"
    assert sync.errors == {"broken": "Transient: venue down"}

    await clock.advance(3600)
    good.entries.append(e("c", FUNDING, "0.2", NOW + timedelta(minutes=30)))
    broken.failure = None
    results = await sync.sync_now()

    # from the newest stored movement, less the overlap; the overlap's repeats are not re-added
    assert good.asked[-1] == NOW - timedelta(days=2) - sync.overlap
    assert results["good"].added == 1
    assert "broken" not in sync.errors
    assert await repo.sums("good", NOW - timedelta(days=31), NOW + timedelta(days=1)) == {
        BTC: {FEE: Decimal("-1"), FUNDING: Decimal("0.2")}}


@dataclass
class FakeGuard:
    venue: Any


@dataclass
class FakeControl:
    guards: dict[str, FakeGuard]
    views: list[PositionView]

    def positions(self) -> list[PositionView]:
        return self.views

    def accounts(self) -> list[str]:
        return list(self.guards)

    def venue_name(self, account: str) -> str:
        return self.guards[account].venue.name


def view(account: str, symbol: str, pnl: str) -> PositionView:
    return PositionView(account=account, symbol=symbol, side=PositionSide.LONG,
                        qty=Decimal("1"), entry_price=Decimal("1"), mark_price=Decimal("1"),
                        unrealized_pnl=Decimal(pnl), stop_price=None, unprotected_seconds=0.0,
                        last_time_to_protect=None)


async def test_report_for_days_syncs_first_and_covers_local_days(repo: LedgerRepo) -> None:
    clock = ManualClock(NOW)  # 15:00 in Moscow
    main = FakeVenue([e("y", PNL, "50", datetime(2026, 1, 4, 20, 0, tzinfo=UTC)),  # the 4th
                      e("t", PNL, "20", datetime(2026, 1, 5, 9, 0, tzinfo=UTC)),
                      e("f", FEE, "-0.5", datetime(2026, 1, 5, 9, 0, tzinfo=UTC))],
                     name="bybit")
    spare = FakeVenue(name="binanceusdm")
    sync = LedgerSync(cast(Any, {"main": main, "spare": spare}), repo, clock)
    control = FakeControl({"main": FakeGuard(main), "spare": FakeGuard(spare)},
                          [view("main", BTC, "-3")])
    reports = PnlReports(cast(ControlService, control), repo, sync, tz="Europe/Moscow",
                         clock=clock)

    today = await reports.for_days(1)

    assert main.asked  # synced before computing
    assert today.start == datetime(2026, 1, 5, 0, 0, tzinfo=MSK)
    assert today.end == NOW and today.tz == "Europe/Moscow"
    first, second = today.accounts
    assert (first.account, first.venue) == ("main", "bybit")
    assert (first.realized, first.fees, first.net, first.unrealized) == (
        Decimal("20"), Decimal("-0.5"), Decimal("19.5"), Decimal("-3"))
    assert len(first.daily) == 30 and first.daily[-1].day == date(2026, 1, 5)
    assert first.daily[-2].realized == Decimal("50")  # the chart has yesterday
    assert (second.net, second.symbols) == (Decimal(0), ())

    week = await reports.for_days(7)
    assert week.accounts[0].realized == Decimal("70")
    assert len((await reports.for_days(45)).accounts[0].daily) == 45  # a longer chart
    with pytest.raises(ValueError):
        await reports.for_days(91)

    slot = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)  # 20:00 Moscow
    daily = await reports.for_slot(slot, slot - timedelta(days=1))
    assert daily.accounts[0].realized == Decimal("70")  # [yesterday 20:00, today 20:00)
    assert daily.end == slot and daily.accounts[0].daily[-1].day == date(2026, 1, 5)


async def test_on_demand_sync_reuses_a_fresh_one(repo: LedgerRepo) -> None:
    """A stream of /pnl requests cannot turn into a stream of venue calls."""
    clock = ManualClock(NOW)
    venue = FakeVenue([e("b", FEE, "-1", NOW - timedelta(days=2))])
    sync = LedgerSync(cast(Any, {"good": venue}), repo, clock)
    await sync.sync_now()
    await sync.sync_now(fresh_for=5)
    assert len(venue.asked) == 1
    await clock.advance(6)
    await sync.sync_now(fresh_for=5)
    assert len(venue.asked) == 2
