"""Real SQLite files in a temp dir; every Database opened here is closed at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.db import Database


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "vigil.sqlite3"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(db_path)
    yield database
    await database.close()


async def scalar(db: Database, sql: str, *args: object) -> object:
    async with db.conn.execute(sql, args) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]
