"""Large webhook signals wait for an admin's Confirm in Telegram: the webhook
(vigil/signals_http.py) asks through this, with the approvals' own rules (admins only, the
two-person rule, expiry, at most once). Confirm opens the entry through the same path as /long."""

from __future__ import annotations

from aiogram import Bot

from bot.approvals import ApprovalService
from engine.entries.model import EntryPlan, EntryRequest


class TelegramConfirm:
    def __init__(self, approvals: ApprovalService, bot: Bot, *, chat_id: int, lang: str) -> None:
        self.approvals = approvals
        self.bot = bot
        self.chat_id = chat_id
        self.lang = lang

    async def ask(self, request: EntryRequest, plan: EntryPlan) -> str:
        approval = await self.approvals.ask_signal(self.bot, chat_id=self.chat_id,
                                                   lang=self.lang, request=request, plan=plan)
        return approval.id

    async def status(self, approval_id: str) -> str | None:
        status = await self.approvals.approvals.status(approval_id)
        return status.value if status is not None else None
