"""Copies each account's ledger (realized PnL, fees, funding) from its venue into SQLite.

Incremental: each sync asks for what happened since the newest stored movement (less a small
overlap, for venues that post a movement a little after its timestamp); the first sync, or one
after a long stop, goes back `lookback` (31 days: the chart shows 30). Storing is idempotent by
the venue's ref, so overlaps and repeated syncs never count a movement twice. One account's
failure never stops the others; the error is kept for the report to show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from loguru import logger

from engine.clock import Clock
from engine.pnl.model import LedgerStore
from engine.ports import Venue

LOOKBACK = timedelta(days=31)
OVERLAP = timedelta(minutes=10)
INTERVAL = 300.0  # seconds between background syncs


@dataclass(frozen=True, slots=True)
class SyncResult:
    account: str
    added: int = 0
    error: str | None = None  # None: the account's ledger is up to date


class LedgerSync:
    def __init__(self, venues: Mapping[str, Venue], repo: LedgerStore, clock: Clock, *,
                 interval: float = INTERVAL, lookback: timedelta = LOOKBACK,
                 overlap: timedelta = OVERLAP) -> None:
        self.venues = venues
        self.repo = repo
        self.clock = clock
        self.interval = interval
        self.lookback = lookback
        self.overlap = overlap
        self.errors: dict[str, str] = {}  # account -> why its last sync failed
        self.synced_at: dict[str, datetime] = {}  # account -> when it last synced fine
        self._lock = asyncio.Lock()  # the loop and an on-demand report never sync at once

    async def sync_now(self, *, fresh_for: float = 0.0) -> dict[str, SyncResult]:
        """Sync every account once (skipping one synced less than `fresh_for` seconds ago, so
        a stream of /pnl requests cannot eat the rate limit that stop placement needs)."""
        async with self._lock:
            results = {}
            now = self.clock.now()
            for account, venue in self.venues.items():
                synced = self.synced_at.get(account)
                if synced is not None and (now - synced).total_seconds() < fresh_for:
                    results[account] = SyncResult(account, 0)
                    continue
                results[account] = await self._sync(account, venue)
            return results

    async def _sync(self, account: str, venue: Venue) -> SyncResult:
        now = self.clock.now()
        earliest = now - self.lookback
        last = await self.repo.last_at(account)
        since = max(last - self.overlap, earliest) if last is not None else earliest
        try:
            entries = await venue.fetch_ledger(since)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # VenueError and anything else: keep the loop alive
            return self._failed(account, f"{type(exc).__name__}: {exc}")
        added = await self.repo.add(account, entries)
        self.errors.pop(account, None)
        self.synced_at[account] = now
        if added:
            logger.debug("ledger {}: {} new movements since {}", account, added, since)
        return SyncResult(account, added)

    def _failed(self, account: str, error: str) -> SyncResult:
        if self.errors.get(account) != error:  # log once per distinct failure
            logger.warning("ledger {}: sync failed: {}", account, error)
        self.errors[account] = error
        return SyncResult(account, error=error)

    async def run(self) -> None:
        """Sync now and then every `interval` seconds, until cancelled."""
        while True:
            try:
                await self.sync_now()
            except asyncio.CancelledError:
                raise
            except Exception:  # storage trouble: log, try again next time
                logger.exception("ledger sync failed")
            await self.clock.sleep(self.interval)
