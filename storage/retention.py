"""Journal retention: a daily job archives rows older than `retention_days`, and a check that
the archives and the live chain still form one chain.

Each archive (`Journal.archive`) holds a contiguous run of rows and names the hash it continues
from (`anchor`) and the hash it ends on (`last_hash`). Together they are one chain when, sorted
by row id, the first starts at the genesis hash, each next one starts where the previous ended,
the ids leave no gap, and the live chain's anchor is the last archive's end.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

from loguru import logger

from engine.clock import Clock
from engine.pnl.schedule import DailySchedule
from storage.journal import ANCHOR, GENESIS, ArchiveResult, Journal, verify_archive
from storage.repositories import StateRepo

ARCHIVE_GLOB = "journal-*.jsonl.gz"
SCHEDULE_KEY = "journal_archive"


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """One archive file's verdict; `reason` is empty when it is whole and in its place."""

    path: Path
    rows: int
    first_id: int | None
    last_id: int | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def _header(path: Path) -> dict[str, object]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        header = json.loads(next(lines))
    if not isinstance(header, dict):
        raise ValueError("the first line is not a header object")
    return header


def check_archives(directory: Path, live_anchor: tuple[int, str]) -> list[ArchiveCheck]:
    """Every archive in `directory`, oldest first: its own chain (`verify_archive`), and its
    link to the archive before it and, for the last, to the live chain's anchor (id, hash).
    Blocking (reads and hashes every archived row): call it off the event loop."""
    checks: list[ArchiveCheck] = []
    found: list[tuple[int, Path, dict[str, object]]] = []
    for path in sorted(directory.glob(ARCHIVE_GLOB)) if directory.is_dir() else []:
        try:
            header = _header(path)
            found.append((int(str(header["first_id"])), path, header))
        except (OSError, EOFError, StopIteration, ValueError, KeyError) as exc:
            checks.append(ArchiveCheck(path, 0, None, None, f"unreadable header: {exc}"))
    prev_id, prev_hash = 0, GENESIS
    for first_id, path, header in sorted(found, key=lambda f: f[0]):
        last_id = int(str(header["last_id"]))
        try:
            own = verify_archive(path)
        except (OSError, EOFError, ValueError) as exc:
            checks.append(ArchiveCheck(path, 0, first_id, last_id, f"unreadable: {exc}"))
            continue
        reason = ""
        if not own.ok:
            where = f" at row {own.broken_id}" if own.broken_id is not None else ""
            reason = f"chain broken{where}: {own.reason}"
        elif first_id != prev_id + 1:
            reason = f"rows {prev_id + 1}..{first_id - 1} are in no archive"
        elif header["anchor"] != prev_hash:
            reason = f"its anchor does not match the end of the chain before row {first_id}"
        checks.append(ArchiveCheck(path, own.rows, first_id, last_id, reason))
        prev_id, prev_hash = last_id, str(header["last_hash"])
    anchor_id, anchor_hash = live_anchor
    if (prev_id, prev_hash) != (anchor_id, anchor_hash):
        checks.append(ArchiveCheck(
            directory, 0, None, None,
            f"the live chain starts after row {anchor_id}, but the archives end at row "
            f"{prev_id}" if prev_id != anchor_id else
            f"the live chain's anchor does not match the end of the archive of row {prev_id}"))
    return checks


async def live_anchor(state: StateRepo) -> tuple[int, str]:
    value = await state.get(*ANCHOR)
    return (int(value["last_id"]), str(value["hash"])) if value else (0, GENESIS)


class JournalRetention:
    """Once a day (at `at`, UTC), archive the rows older than `days`."""

    def __init__(self, journal: Journal, state: StateRepo, clock: Clock, *, days: int,
                 directory: Path, at: time = time(3, 0)) -> None:
        if days < 1:
            raise ValueError(f"retention must be at least 1 day, not {days}")
        self.journal = journal
        self.clock = clock
        self.days = days
        self.directory = directory
        self.results: list[ArchiveResult] = []
        self.schedule = DailySchedule(self._job, at=at, tz="UTC", clock=clock, state=state,
                                      key=SCHEDULE_KEY)

    async def archive_now(self) -> ArchiveResult:
        cutoff = self.clock.now() - timedelta(days=self.days)
        result = await self.journal.archive(cutoff, self.directory)
        self.results.append(result)
        if result.path is not None:
            logger.info("journal: {} rows older than {} archived to {}", result.rows,
                        cutoff.isoformat(), result.path)
        return result

    async def _job(self, slot: datetime, previous: datetime) -> None:
        await self.archive_now()

    async def run(self) -> None:
        """Archive once at start (rows may have aged while stopped), then daily."""
        try:
            await self.archive_now()
        except (OSError, ValueError) as exc:  # a full disk or a broken row: log, keep running
            logger.error("journal archive failed: {}", exc)
        await self.schedule.run()
