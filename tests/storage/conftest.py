"""Storage test helpers; the `db` and `db_path` fixtures come from tests/conftest.py."""

from __future__ import annotations

from storage.db import Database


async def scalar(db: Database, sql: str, *args: object) -> object:
    async with db.conn.execute(sql, args) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]
