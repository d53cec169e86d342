"""Retention as the runtime runs it: archives at start and daily on the injected clock, in real
SQLite files and gzip archives; `check_archives` finds every broken, missing or unlinked segment;
`vigil journal verify --archives` reports them and exits 1."""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from engine.clock import ManualClock
from engine.domain import events as ev
from storage.db import Database
from storage.journal import Journal
from storage.repositories import StateRepo
from storage.retention import JournalRetention, check_archives, live_anchor
from tests.engine.conftest import eventually
from vigil.settings import SettingsError, load_settings

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def hold(at: datetime) -> ev.HoldSet:
    return ev.HoldSet(account="paper", at=at, reason=f"r{at.isoformat()}", by="test")


async def fill_days(journal: Journal, first: int, last: int) -> None:
    """One row a day, `first` to `last` days after T0 (negative: before)."""
    for day in range(first, last + 1):
        await journal.append(hold(T0 + timedelta(days=day)))


def live_ids(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [i for (i,) in conn.execute("SELECT id FROM journal ORDER BY id")]


async def archived_twice(db: Database, directory: Path) -> Journal:
    """Rows 1..7 (days -10..-4) and 8 (day -3) archived: two segments, rows 9.. live."""
    journal = Journal(db)
    await fill_days(journal, -10, -1)
    retention = JournalRetention(journal, StateRepo(db), ManualClock(T0), days=3,
                                 directory=directory)
    assert (await retention.archive_now()).rows == 7
    retention.clock = ManualClock(T0 + timedelta(days=1))
    assert (await retention.archive_now()).rows == 1
    return journal


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_rows_are_archived_at_start_and_then_daily_at_the_set_time(
        db: Database, tmp_path: Path) -> None:
    journal = Journal(db)
    await fill_days(journal, -10, -1)
    clock = ManualClock(T0)
    retention = JournalRetention(journal, StateRepo(db), clock, days=3,
                                 directory=tmp_path / "archive", at=time(3, 0))
    task = asyncio.create_task(retention.run())
    try:
        await eventually(retention.schedule.caught_up.is_set)
        # at start: days -10..-4 are older than 3 days
        assert [r.rows for r in retention.results] == [7]
        assert live_ids(db.path) == [8, 9, 10]
        await fill_days(journal, 0, 0)
        # 02:59 the next day: the job has not run
        for _ in range(14 * 60 + 59):
            await clock.advance(60)
            await settle()
        assert len(retention.results) == 1
        for _ in range(2):
            await clock.advance(60)
            await settle()
        await eventually(lambda: len(retention.results) == 2)
        # at 03:00 on Jan 6 the cut-off is Jan 3 03:00: day -3 (Jan 2 12:00) goes, -2 stays
        assert retention.results[1].rows == 1
        assert live_ids(db.path) == [9, 10, 11]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (await journal.verify()).ok
    checks = check_archives(tmp_path / "archive", await live_anchor(StateRepo(db)))
    assert [(c.first_id, c.last_id, c.rows, c.ok) for c in checks] == [
        (1, 7, 7, True), (8, 8, 1, True)]


async def test_nothing_old_enough_writes_no_archive(db: Database, tmp_path: Path) -> None:
    journal = Journal(db)
    await fill_days(journal, -2, 0)
    retention = JournalRetention(journal, StateRepo(db), ManualClock(T0), days=3,
                                 directory=tmp_path / "archive")
    result = await retention.archive_now()
    assert result.path is None and result.rows == 0
    assert live_ids(db.path) == [1, 2, 3]
    assert check_archives(tmp_path / "archive", await live_anchor(StateRepo(db))) == []


def test_retention_needs_a_whole_day(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1 day"):
        JournalRetention(None, None, ManualClock(T0), days=0,  # type: ignore[arg-type]
                         directory=tmp_path)
    with pytest.raises(SettingsError, match=r"journal\.retention_days"):
        load_settings(None, journal={"retention_days": 0})


def rewrite(path: Path, change: str) -> None:
    """Rewrite an archive with one row's payload changed (gzip'd again, header kept)."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        header, *rows = lines.read().splitlines()
    row = json.loads(rows[1])
    row[4] = row[4].replace('"by":"test"', change)
    rows[1] = json.dumps(row)
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write("\n".join([header, *rows]) + "\n")


async def test_a_tampered_archive_is_named_with_its_broken_row(
        db: Database, tmp_path: Path) -> None:
    await archived_twice(db, tmp_path / "archive")
    first = tmp_path / "archive" / "journal-000000000001-000000000007.jsonl.gz"
    rewrite(first, '"by":"mallory"')

    checks = check_archives(tmp_path / "archive", await live_anchor(StateRepo(db)))

    assert [(c.path.name, c.ok) for c in checks] == [
        (first.name, False), ("journal-000000000008-000000000008.jsonl.gz", True)]
    assert checks[0].reason == "chain broken at row 2: hash does not match contents"


async def test_a_missing_archive_and_a_foreign_anchor_are_found(
        db: Database, tmp_path: Path) -> None:
    await archived_twice(db, tmp_path / "archive")
    anchor = await live_anchor(StateRepo(db))
    (tmp_path / "archive" / "journal-000000000001-000000000007.jsonl.gz").unlink()

    (check,) = check_archives(tmp_path / "archive", anchor)
    assert check.reason == "rows 1..7 are in no archive"

    checks = check_archives(tmp_path / "archive", (anchor[0], "f" * 64))
    assert checks[-1].reason == ("the live chain's anchor does not match the end of the "
                                 "archive of row 8")


async def test_archives_that_stop_short_of_the_live_chain_are_found(
        db: Database, tmp_path: Path) -> None:
    await archived_twice(db, tmp_path / "archive")
    anchor = await live_anchor(StateRepo(db))
    (tmp_path / "archive" / "journal-000000000008-000000000008.jsonl.gz").unlink()

    checks = check_archives(tmp_path / "archive", anchor)

    assert [c.ok for c in checks] == [True, False]
    assert checks[1].reason == "the live chain starts after row 8, but the archives end at row 7"


async def _vigil(cwd: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vigil.cli", *args, cwd=cwd, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_cli_verifies_the_archives_and_exits_1_on_a_broken_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "vigil.toml"
    config.write_text(f'data_dir = "{data}"\n[journal]\nretention_days = 3\n')
    settings = load_settings(config)
    db = await Database.open(settings.db_path)
    try:
        await archived_twice(db, settings.journal_archive_dir)
    finally:
        await db.close()

    code, out = await _vigil(tmp_path, "--config", str(config), "journal", "verify", "--archives")
    assert code == 0, out
    assert "journal OK: 2 rows, hash chain intact" in out
    assert "archive OK: journal-000000000001-000000000007.jsonl.gz, rows 1..7" in out
    assert "archive OK: journal-000000000008-000000000008.jsonl.gz, rows 8..8" in out

    rewrite(settings.journal_archive_dir / "journal-000000000001-000000000007.jsonl.gz",
            '"by":"mallory"')
    code, out = await _vigil(tmp_path, "--config", str(config), "journal", "verify")
    assert code == 0, out  # without --archives only the live chain is read
    code, out = await _vigil(tmp_path, "--config", str(config), "journal", "verify", "--archives")
    assert code == 1
    assert ("archive BROKEN: journal-000000000001-000000000007.jsonl.gz: chain broken at row 2"
            in out)


async def test_the_engine_archives_when_retention_is_set(tmp_path: Path) -> None:
    from vigil.runtime import Engine

    settings = load_settings(None, data_dir=tmp_path / "data",
                             journal={"retention_days": 3, "archive_time": "04:30"})
    settings.data_dir.mkdir()
    db = await Database.open(settings.db_path)
    try:
        await fill_days(Journal(db), -10, -1)
    finally:
        await db.close()
    engine = await Engine.build(settings, ManualClock(T0))
    try:
        await engine.start()
        assert engine.retention is not None
        assert engine.retention.schedule.next_slot(T0) == datetime(2026, 1, 6, 4, 30, tzinfo=UTC)
        await eventually(lambda: bool(engine.retention and engine.retention.results))
        assert engine.retention.results[0].rows == 7
        assert engine.retention.results[0].path == (
            settings.data_dir / "journal-archive" / "journal-000000000001-000000000007.jsonl.gz")
        await engine.stop()
    finally:
        await engine.close()
    unset = await Engine.build(load_settings(None, data_dir=tmp_path / "data2"), ManualClock(T0))
    try:
        await unset.start()
        assert unset.retention is None
        await unset.stop()
    finally:
        await unset.close()
