"""Retention: old rows move to a compressed archive with the chain's anchor hash; the live chain
verifies from that anchor and goes on from it; archives verify on their own."""

from __future__ import annotations

import gzip
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.domain import events as ev
from storage.db import Database
from storage.journal import GENESIS, Journal, verify_archive

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def hold(i: int) -> ev.HoldSet:
    return ev.HoldSet(account="paper", at=T0 + timedelta(days=i), reason=f"r{i}", by="test")


def live_ids(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        return [i for (i,) in conn.execute("SELECT id FROM journal ORDER BY id")]


def files(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.exists() else []


async def filled(db: Database, days: int) -> Journal:
    journal = Journal(db)
    for i in range(days):
        await journal.append(hold(i))
    return journal


async def test_old_rows_are_archived_and_the_live_chain_verifies_from_the_anchor(
        db: Database, tmp_path: Path) -> None:
    journal = await filled(db, 6)

    result = await journal.archive(T0 + timedelta(days=3), tmp_path / "archive")

    assert result.rows == 3 and result.path is not None
    assert result.path.name == "journal-000000000001-000000000003.jsonl.gz"
    assert live_ids(db.path) == [4, 5, 6]
    live = await journal.verify()
    assert live.ok and live.rows == 3
    archived = verify_archive(result.path)
    assert archived.ok and archived.rows == 3
    with gzip.open(result.path, "rt") as lines:
        header = json.loads(next(lines))
    assert header["anchor"] == GENESIS and header["last_hash"] == result.anchor
    assert [r.kind for r in await journal.rows()] == ["hold_set"] * 3


async def test_the_chain_goes_on_from_the_anchor_after_everything_was_archived(
        db: Database, tmp_path: Path) -> None:
    journal = await filled(db, 3)
    first = await journal.archive(T0 + timedelta(days=30), tmp_path)
    assert first.rows == 3 and live_ids(db.path) == []

    again = Journal(db)  # a restart: the chain's end now comes from the anchor
    assert await again.append(hold(40)) == 4
    assert [r.id for r in await again.rows()] == [4]
    with closing(sqlite3.connect(db.path)) as conn:
        prev = conn.execute("SELECT prev_hash FROM journal").fetchone()[0]
    assert prev == first.anchor
    assert (await again.verify()).ok

    second = await again.archive(T0 + timedelta(days=50), tmp_path)
    assert second.path is not None and second.rows == 1
    with gzip.open(second.path, "rt") as lines:
        assert json.loads(next(lines))["anchor"] == first.anchor  # archives chain together
    assert verify_archive(second.path).ok


async def test_nothing_old_enough_changes_nothing(db: Database, tmp_path: Path) -> None:
    journal = await filled(db, 3)
    result = await journal.archive(T0, tmp_path / "archive")
    assert (result.path, result.rows, result.anchor) == (None, 0, GENESIS)
    assert live_ids(db.path) == [1, 2, 3] and files(tmp_path / "archive") == []


async def test_a_naive_cut_off_is_refused_and_changes_nothing(db: Database,
                                                              tmp_path: Path) -> None:
    journal = await filled(db, 3)
    with pytest.raises(ValueError, match="cut-off must be timezone-aware"):
        await journal.archive(datetime(2027, 1, 1), tmp_path / "archive")
    assert live_ids(db.path) == [1, 2, 3] and files(tmp_path / "archive") == []


async def test_a_broken_segment_is_not_archived(db: Database, tmp_path: Path) -> None:
    journal = await filled(db, 4)
    await db.conn.execute("UPDATE journal SET payload = '{}' WHERE id = 2")
    await db.conn.commit()
    with pytest.raises(ValueError, match="journal row 2 is broken"):
        await journal.archive(T0 + timedelta(days=3), tmp_path / "archive")
    assert live_ids(db.path) == [1, 2, 3, 4] and files(tmp_path / "archive") == []


async def test_a_tampered_archive_is_detected(db: Database, tmp_path: Path) -> None:
    journal = await filled(db, 4)
    result = await journal.archive(T0 + timedelta(days=3), tmp_path)
    assert result.path is not None
    with gzip.open(result.path, "rt") as lines:
        text = lines.read()
    with gzip.open(result.path, "wt") as out:
        out.write(text.replace("r1", "r9"))

    broken = verify_archive(result.path)
    assert (broken.ok, broken.broken_id, broken.reason) == (
        False, 2, "hash does not match contents")


async def test_an_archive_cut_short_is_detected(db: Database, tmp_path: Path) -> None:
    journal = await filled(db, 4)
    result = await journal.archive(T0 + timedelta(days=3), tmp_path)
    assert result.path is not None
    with gzip.open(result.path, "rt") as lines:
        kept = lines.readlines()[:-1]
    with gzip.open(result.path, "wt") as out:
        out.writelines(kept)
    assert verify_archive(result.path).reason == "rows missing at the end of the archive"


async def test_rows_left_behind_by_a_stop_between_anchor_and_delete_are_skipped(
        db: Database, tmp_path: Path) -> None:
    journal = await filled(db, 4)
    await journal.archive(T0 + timedelta(days=2), tmp_path)
    # Put archived rows back, as if the delete never ran: verify starts after the anchor.
    await db.conn.execute("INSERT INTO journal VALUES (1, 'x', 'x', 'x', 'x', 'x', 'x')")
    await db.conn.commit()
    result = await journal.verify()
    assert result.ok and result.rows == 2
