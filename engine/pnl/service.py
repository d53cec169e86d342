"""PnL reports for the chat (and later HTTP): sync the ledger, then compute.

Two periods: `/pnl [days]` covers local calendar days up to now (1: today since midnight in the
report time zone); the scheduled daily report covers the time since the previous scheduled
report, so consecutive daily reports neither overlap nor leave a gap.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from engine.clock import Clock
from engine.domain.pnl import MAX_REPORT_DAYS
from engine.pnl.ledger_sync import LedgerSync
from engine.pnl.model import LedgerStore, local_midnight
from engine.pnl.report import DailyReport, account_pnl, calendar_period
from engine.results import PositionView

CHART_DAYS = 30
ON_DEMAND_FRESH_SECONDS = 5.0  # /pnl reuses a sync this recent (spam cannot eat the rate limit)
MAX_DAYS = MAX_REPORT_DAYS


class AccountBook(Protocol):
    """What a report reads of the accounts (ControlService answers it)."""

    def accounts(self) -> list[str]: ...

    def venue_name(self, account: str) -> str: ...

    def positions(self) -> list[PositionView]: ...


class PnlReports:
    def __init__(self, control: AccountBook, repo: LedgerStore, sync: LedgerSync, *,
                 tz: str, clock: Clock, chart_days: int = CHART_DAYS) -> None:
        self.control = control
        self.repo = repo
        self.sync = sync
        self.tz_name = tz
        self.tz = ZoneInfo(tz)
        self.clock = clock
        self.chart_days = chart_days

    async def for_days(self, days: int) -> DailyReport:
        """The last `days` local calendar days, today included, up to now."""
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days must be 1..{MAX_DAYS}")
        await self.sync.sync_now(fresh_for=ON_DEMAND_FRESH_SECONDS)
        start, now = calendar_period(self.clock.now(), self.tz, days)
        # Whole calendar days: a movement stamped this very instant counts too.
        until = local_midnight(now.date() + timedelta(days=1), self.tz)
        return await self.build(start, until, shown_end=now,
                                chart_days=max(self.chart_days, days))

    async def for_slot(self, slot: datetime, previous: datetime) -> DailyReport:
        """The scheduled report for [previous, slot)."""
        await self.sync.sync_now()
        return await self.build(previous, slot)

    async def build(self, start: datetime, until: datetime, *, shown_end: datetime | None = None,
                    chart_days: int | None = None) -> DailyReport:
        """Figures for [start, until) from what the ledger holds (no sync); unrealized is now.
        The report says it ends at `shown_end` (default `until`)."""
        end = min(shown_end or until, until)
        open_pnl: dict[str, list[tuple[str, Decimal]]] = {}
        for view in self.control.positions():
            open_pnl.setdefault(view.account, []).append((view.symbol, view.unrealized_pnl))
        accounts = []
        for name in self.control.accounts():
            sums = await self.repo.sums(name, start, until)
            # The chart ends with the report's last day (`until` itself is excluded).
            last = end if end < until else until - timedelta(microseconds=1)
            daily = await self.repo.daily(name, chart_days or self.chart_days, self.tz,
                                          max(last, start))
            accounts.append(account_pnl(name, self.control.venue_name(name), sums,
                                        open_pnl.get(name, []), daily,
                                        error=self.sync.errors.get(name)))
        return DailyReport(start.astimezone(self.tz), end.astimezone(self.tz), self.tz_name,
                           tuple(accounts))
