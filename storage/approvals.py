"""Approvals: risky actions waiting for a tap. State changes are single conditional UPDATEs, so a
double tap, two admins at once or a restart can never run one twice."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from engine.approvals import Approval, ApprovalAction, ApprovalStatus
from storage.db import Database
from storage.times import to_text


def _row(r: Any) -> Approval:
    return Approval(
        id=r["id"], action=ApprovalAction(r["action"]), args=json.loads(r["args"]),
        requested_by=r["requested_by"], requested_by_name=r["requested_by_name"],
        chat_id=r["chat_id"], message_id=r["message_id"], lang=r["lang"],
        created_at=datetime.fromisoformat(r["created_at"]),
        expires_at=datetime.fromisoformat(r["expires_at"]), status=ApprovalStatus(r["status"]),
        decided_by=r["decided_by"], outcome=r["outcome"])


class ApprovalRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, *, action: str, args: dict[str, Any], requested_by: int,
                     requested_by_name: str, chat_id: int, lang: str, now: datetime,
                     expires_at: datetime) -> Approval:
        approval_id = secrets.token_urlsafe(9)  # 12 chars: fits CallbackData's 64 bytes
        await self.db.conn.execute(
            "INSERT INTO approvals (id, action, args, requested_by, requested_by_name, chat_id,"
            " lang, created_at, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (approval_id, action, json.dumps(args), requested_by, requested_by_name, chat_id,
             lang, to_text(now), to_text(expires_at), ApprovalStatus.PENDING.value))
        await self.db.conn.commit()
        approval = await self.get(approval_id)
        assert approval is not None
        return approval

    async def attach_message(self, approval_id: str, message_id: int) -> None:
        await self.db.conn.execute("UPDATE approvals SET message_id = ? WHERE id = ?",
                                   (message_id, approval_id))
        await self.db.conn.commit()

    async def get(self, approval_id: str) -> Approval | None:
        rows = await self.db.conn.execute_fetchall("SELECT * FROM approvals WHERE id = ?",
                                                   (approval_id,))
        return _row(rows[0]) if rows else None

    async def claim(self, approval_id: str, by: int, now: datetime) -> bool:
        """pending -> executing, only if still pending and not expired. True for one caller."""
        cur = await self.db.conn.execute(
            "UPDATE approvals SET status = 'executing', decided_by = ?, decided_at = ?"
            " WHERE id = ? AND status = 'pending' AND expires_at > ?",
            (by, to_text(now), approval_id, to_text(now)))
        await self.db.conn.commit()
        return cur.rowcount == 1

    async def cancel(self, approval_id: str, by: int, now: datetime) -> bool:
        cur = await self.db.conn.execute(
            "UPDATE approvals SET status = 'cancelled', decided_by = ?, decided_at = ?"
            " WHERE id = ? AND status = 'pending' AND expires_at > ?",
            (by, to_text(now), approval_id, to_text(now)))
        await self.db.conn.commit()
        return cur.rowcount == 1

    async def finish(self, approval_id: str, outcome: str) -> None:
        await self.db.conn.execute(
            "UPDATE approvals SET status = 'done', outcome = ? WHERE id = ?",
            (outcome, approval_id))
        await self.db.conn.commit()

    async def expire_due(self, now: datetime) -> list[Approval]:
        """Mark every pending approval past its expiry as expired and return them."""
        # One call runs the statement to completion: a statement left open across an await
        # would make another task's commit on the shared connection fail.
        rows = await self.db.conn.execute_fetchall(
            "UPDATE approvals SET status = 'expired', decided_at = ?"
            " WHERE status = 'pending' AND expires_at <= ? RETURNING *",
            (to_text(now), to_text(now)))
        await self.db.conn.commit()
        return [_row(r) for r in rows]

    async def pending(self) -> list[Approval]:
        rows = await self.db.conn.execute_fetchall(
            "SELECT * FROM approvals WHERE status = 'pending' ORDER BY created_at")
        return [_row(r) for r in rows]

    async def interrupted(self) -> list[Approval]:
        """Approvals claimed but not finished: a crash mid-execution. Reported, never re-run."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT * FROM approvals WHERE status = 'executing'")
        return [_row(r) for r in rows]
