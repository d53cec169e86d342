"""Many tasks share one aiosqlite connection: no statement may stay open across an await, or
another task's commit fails ("SQL statements in progress") and the journal's chain forks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.domain import events as ev
from storage.approvals import ApprovalRepo
from storage.db import Database
from storage.journal import Journal
from storage.repositories import PositionRepo, StateRepo

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


async def test_reads_and_expiry_interleaved_with_journal_appends_keep_the_chain(
        tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "v.db")
    try:
        journal, approvals, state = Journal(db), ApprovalRepo(db), StateRepo(db)
        for i in range(30):
            await approvals.create(action="close", args={"i": i}, requested_by=1,
                                   requested_by_name="a", chat_id=1, lang="en", now=NOW,
                                   expires_at=NOW + timedelta(seconds=i % 3))
        await state.put("lang", "1", "ru")

        async def appends() -> None:
            for i in range(60):
                await journal.append(ev.HoldSet(account="paper", reason=f"r{i}", by="x"))

        async def readers() -> None:
            for i in range(60):
                await approvals.expire_due(NOW + timedelta(seconds=i % 4))
                await approvals.pending()
                assert await state.get("lang", "1") == "ru"
                await PositionRepo(db).load("paper")
                await journal.rows(limit=5)

        await asyncio.gather(appends(), readers(), appends(), readers())
        result = await journal.verify()
        assert result.ok and result.rows == 120
    finally:
        await db.close()
