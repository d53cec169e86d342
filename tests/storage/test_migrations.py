"""Numbered migrations: applied in order, once, each in its own transaction."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from storage import db as db_module
from storage.db import Database, bundled_migrations
from storage.repositories import StateRepo
from tests.storage.conftest import scalar

Migration = tuple[int, str, str]


def bundled() -> list[Migration]:
    return bundled_migrations()


def next_migration(sql: str, slug: str = "extra") -> Migration:
    version = len(bundled()) + 1
    return version, f"{version:03d}_{slug}.sql", sql


async def recorded(db: Database) -> list[tuple[int, str]]:
    async with db.conn.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version") as cur:
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def tables(db: Database) -> set[str]:
    async with db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
        return {r[0] for r in await cur.fetchall()}


def worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t is not threading.main_thread()}


def test_bundled_migrations_are_numbered_from_one() -> None:
    migrations = bundled()
    assert migrations, "no migrations shipped in storage/migrations"
    assert [v for v, _, _ in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0][1] == "001_initial.sql"
    assert all(sql.strip() for _, _, sql in migrations)


async def test_fresh_database_records_every_bundled_migration(db: Database) -> None:
    expected = [(v, name) for v, name, _ in bundled()]

    assert await recorded(db) == expected
    assert await db.schema_version() == len(expected)
    assert {"journal", "state", "positions", "secrets"} <= await tables(db)
    applied_at = await scalar(db, "SELECT applied_at FROM schema_migrations WHERE version = 1")
    assert isinstance(applied_at, str) and applied_at.endswith("Z")


async def test_reopening_applies_nothing_twice(db_path: Path) -> None:
    first = await Database.open(db_path)
    before = await recorded(first)
    stamp = await scalar(first, "SELECT applied_at FROM schema_migrations WHERE version = 1")
    await first.close()

    second = await Database.open(db_path)
    try:
        again = await second.migrate(bundled())
        after = await recorded(second)
        stamp_after = await scalar(second,
                                   "SELECT applied_at FROM schema_migrations WHERE version = 1")
    finally:
        await second.close()

    assert again == []
    assert after == before
    assert stamp_after == stamp


async def test_a_new_migration_is_applied_exactly_once(db_path: Path) -> None:
    await (await Database.open(db_path)).close()  # an existing database at the bundled version
    extra = next_migration(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\n"
        "INSERT INTO state (scope, key, value, updated_at) VALUES ('seed', 'k', '1', 'now');",
        "add_notes")
    migrations = [*bundled(), extra]

    for _ in range(2):
        db = await Database.open(db_path, migrations=migrations)
        try:
            version = await db.schema_version()
            names = await recorded(db)
            seeded = await scalar(db, "SELECT COUNT(*) FROM state WHERE scope = 'seed'")
            has_notes = "notes" in await tables(db)
        finally:
            await db.close()
        assert version == extra[0]
        assert names[-1] == (extra[0], extra[1]) and len(names) == extra[0]
        assert seeded == 1  # the migration's INSERT ran once, not on every open
        assert has_notes


async def test_migrate_reports_what_it_applied(db: Database) -> None:
    extra = next_migration("CREATE TABLE notes (id INTEGER PRIMARY KEY);")

    assert await db.migrate([*bundled(), extra]) == [extra[0]]
    assert await db.migrate([*bundled(), extra]) == []


async def test_a_failing_migration_changes_nothing_and_the_database_stays_usable(
        db: Database) -> None:
    bad = next_migration("CREATE TABLE half_done (x INTEGER);\n"
                         "INSERT INTO no_such_table VALUES (1);", "broken")
    version = await db.schema_version()

    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        await db.migrate([*bundled(), bad])

    assert await db.schema_version() == version
    assert "half_done" not in await tables(db)  # the first statement was rolled back too
    assert not db.conn.in_transaction
    state = StateRepo(db)
    await state.put("hold", "main", {"reason": "still works"})
    assert await state.get("hold", "main") == {"reason": "still works"}


async def test_a_failing_migration_at_open_closes_and_leaves_the_file_usable(
        db_path: Path) -> None:
    await (await Database.open(db_path)).close()
    bad = next_migration("CREATE TABLE half_done (x INTEGER);\n"
                         "INSERT INTO no_such_table VALUES (1);", "broken")
    threads_before = worker_threads()

    with pytest.raises(sqlite3.OperationalError):
        await Database.open(db_path, migrations=[*bundled(), bad])

    leaked = worker_threads() - threads_before
    for thread in leaked:  # a closed connection's worker ends at once; a leaked one never does
        thread.join(timeout=2)
    assert not [t for t in leaked if t.is_alive()], "the failed open left its connection open"

    db = await Database.open(db_path)
    try:
        assert await db.schema_version() == len(bundled())
        assert "half_done" not in await tables(db)
        assert await StateRepo(db).incr("counter", "x") == 1
    finally:
        await db.close()

    fixed = (bad[0], bad[1], "CREATE TABLE half_done (x INTEGER);")
    db = await Database.open(db_path, migrations=[*bundled(), fixed])
    try:
        assert await db.schema_version() == fixed[0]
        assert "half_done" in await tables(db)
    finally:
        await db.close()


async def test_a_gap_in_supplied_migrations_raises(db_path: Path) -> None:
    version = len(bundled()) + 2  # skips one number
    gap = (version, f"{version:03d}_gap.sql", "CREATE TABLE gap (x INTEGER);")

    with pytest.raises(RuntimeError, match="without gaps"):
        await Database.open(db_path, migrations=[*bundled(), gap])

    db = await Database.open(db_path)
    try:
        assert "gap" not in await tables(db)
        assert await db.schema_version() == len(bundled())
    finally:
        await db.close()


def test_a_gap_in_shipped_migration_files_raises(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = tmp_path / "migrations"
    shipped.mkdir()
    (shipped / "001_initial.sql").write_text("CREATE TABLE a (x);")
    (shipped / "003_later.sql").write_text("CREATE TABLE c (x);")
    (shipped / "__init__.py").write_text("")
    (shipped / "README.md").write_text("not a migration")

    class FakeResources:
        @staticmethod
        def files(_package: str) -> Path:
            return shipped

    monkeypatch.setattr(db_module, "resources", FakeResources)
    with pytest.raises(RuntimeError, match=r"without gaps: \[1, 3\]"):
        bundled_migrations()

    (shipped / "002_middle.sql").write_text("CREATE TABLE b (x);")
    assert [(v, n) for v, n, _ in bundled_migrations()] == [
        (1, "001_initial.sql"), (2, "002_middle.sql"), (3, "003_later.sql")]


async def test_wal_mode_is_on(db: Database) -> None:
    assert await scalar(db, "PRAGMA journal_mode") == "wal"
    assert await scalar(db, "PRAGMA foreign_keys") == 1
