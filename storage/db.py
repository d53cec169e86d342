"""One aiosqlite connection in WAL mode, with numbered SQL migrations applied in order."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from loguru import logger

T = TypeVar("T")

_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def bundled_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped in storage/migrations, in order."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        match = _MIGRATION_RE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    _check_numbering(found)
    return found


def _check_numbering(migrations: list[tuple[int, str, str]]) -> None:
    versions = [v for v, _, _ in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 001, 002, ... without gaps: {versions}")


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._before_close: list[Callable[[], Awaitable[None]]] = []
        # StateRepo's cache of the scopes read on hot paths: one per database, shared by every
        # StateRepo on it, so a write through any of them is seen by all.
        self.state_cache: dict[tuple[str, str], Any] = {}

    @classmethod
    async def open(cls, path: Path,
                   migrations: list[tuple[int, str, str]] | None = None) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path)
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await db.migrate(bundled_migrations() if migrations is None else migrations)
        except BaseException:
            await conn.close()  # or aiosqlite's thread outlives the failed open
            raise
        return db

    async def migrate(self, migrations: list[tuple[int, str, str]]) -> list[int]:
        """Apply the migrations newer than the recorded version, each in its own transaction."""
        _check_numbering(migrations)
        await self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        await self.conn.commit()
        current = await self.schema_version()
        applied = []
        for version, name, sql in migrations:
            if version <= current:
                continue
            try:
                await self.conn.executescript(
                    "BEGIN;\n" + sql + "\nINSERT INTO schema_migrations VALUES "
                    f"({version}, '{name}', strftime('%Y-%m-%dT%H:%M:%fZ','now'));\nCOMMIT;")
            except Exception:
                await self.conn.rollback()
                raise
            applied.append(version)
        return applied

    async def schema_version(self) -> int:
        rows = await self.conn.execute_fetchall("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the connection's own thread as one job: no other task's statement can
        interleave with the statements inside it (aiosqlite runs one job at a time)."""
        return await self.submit(fn)

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue `fn` as one job on the connection's thread now, without yielding to the loop
        (jobs run in the order queued); the future gives its result."""
        conn = self.conn
        if not conn._running or conn._connection is None:  # private API: aiosqlite is pinned
            raise ValueError("Connection closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        conn._tx.put_nowait((future, lambda: fn(conn._conn)))
        return future

    def before_close(self, hook: Callable[[], Awaitable[None]]) -> None:
        """`hook` runs at close(), before the connection goes (e.g. the journal's last batch)."""
        self._before_close.append(hook)

    async def close(self) -> None:
        for hook in self._before_close:
            try:
                await hook()
            except Exception:  # closing must go on: the hook's owner logged what it lost
                logger.exception("a close hook failed")
        self._before_close.clear()
        await self.conn.close()
