"""What /metrics adds to the engine's registry: loop lag, the outbox, approvals, the
journal and each account's PnL today. Its own registry, filled just before each scrape (outbox
and approvals are SQL reads, PnL a ledger read, which a synchronous Prometheus collector cannot
await)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from engine.clock import Clock
from engine.ops import OpsReports
from storage.approvals import ApprovalRepo
from storage.journal import Journal
from storage.outbox import OutboxRepo
from vigil.http.health import LoopLag


class OpsMetrics:
    def __init__(self, *, engine_registry: CollectorRegistry, journal: Journal,
                 outbox: OutboxRepo, approvals: ApprovalRepo, loop: LoopLag,
                 clock: Clock, reports: OpsReports) -> None:
        self.engine_registry = engine_registry
        self.journal = journal
        self.outbox = outbox
        self.approvals = approvals
        self.loop = loop
        self.clock = clock
        self.reports = reports
        self.registry = r = CollectorRegistry()
        self.loop_lag = Gauge("vigil_event_loop_lag_seconds",
                              "How late the event loop runs a short sleep", registry=r)
        self.outbox_pending = Gauge("vigil_outbox_pending", "Alerts waiting to be delivered",
                                    registry=r)
        self.outbox_oldest = Gauge("vigil_outbox_oldest_age_seconds",
                                   "Age of the oldest alert waiting to be delivered (0: none)",
                                   registry=r)
        self.approvals_pending = Gauge("vigil_approvals_pending",
                                       "Approvals waiting for Confirm or Cancel", registry=r)
        self.journal_ok = Gauge("vigil_journal_write_ok",
                                "1 while the journal's last batch was committed", registry=r)
        self.journal_commit = Histogram(
            "vigil_journal_commit_seconds", "Time to commit one journal batch (group commit)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r)
        self.pnl_today = Gauge(
            "vigil_pnl_today", "Net PnL today (realized + fees + funding since local midnight, "
            "the report time zone), as /api/ops_report's pnl_today net", ["account"], registry=r)
        self._hook: Callable[[float, int], None] = lambda seconds, _rows: \
            self.journal_commit.observe(seconds)
        journal.on_commit = self._hook

    def detach(self) -> None:
        if self.journal.on_commit is self._hook:
            self.journal.on_commit = None

    async def render(self) -> bytes:
        now = self.clock.now()
        self.loop_lag.set(self.loop.seconds)
        self.outbox_pending.set(await self.outbox.pending_count())
        oldest = await self.outbox.oldest_pending_at()
        self.outbox_oldest.set(0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
        self.approvals_pending.set(len(await self.approvals.pending()))
        self.journal_ok.set(0 if self.journal.write_error else 1)
        # The ledger read is the ops report's, cached for 5 s: scrapes cost no venue weight.
        for day in await self.reports.days():
            self.pnl_today.labels(day.account).set(float(day.net))
        # Two expositions, one after the other: the metric names never overlap.
        return generate_latest(self.engine_registry) + generate_latest(self.registry)
