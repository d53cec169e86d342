"""Risky actions wait for a tap: a summary of exactly what will happen, Confirm / Cancel.

The approval lives in SQLite (it survives restarts); claiming it is one conditional UPDATE, so
it runs at most once however many taps arrive. Expired ones lose their buttons and say so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from loguru import logger

from bot import render
from bot.roles import Role
from engine.clock import Clock
from engine.control import CloseTarget, ControlService, OrderTarget
from engine.domain.reports import OrderKind
from engine.domain.values import OrderSide, PositionSide
from storage.approvals import Approval, ApprovalRepo, ApprovalStatus


class ApprovalCallback(CallbackData, prefix="ap"):
    id: str
    yes: bool


class Decision:
    """What a tap did, for the callback answer."""

    DONE = "done"
    CANCELLED = "cancelled"
    NOT_ALLOWED = "not_allowed"
    SECOND_ADMIN = "second_admin"
    ALREADY = "already"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


Executor = Callable[[Approval, str], Awaitable[str]]


class ApprovalService:
    def __init__(self, repo: ApprovalRepo, control: ControlService, *, clock: Clock,
                 i18n: I18n, ttl_seconds: int, two_person: bool) -> None:
        self.repo = repo
        self.control = control
        self.clock = clock
        self.i18n = i18n
        self.ttl = timedelta(seconds=ttl_seconds)
        self.two_person = two_person
        self._executors: dict[str, Executor] = {
            "close": self._close, "cancel_all": self._cancel_all, "resume": self._resume}

    # --- asking --------------------------------------------------------------------------------
    async def request(self, bot: Bot, *, chat_id: int, user: User, action: str,
                      args: dict[str, Any], summary: str, lang: str) -> Approval:
        now = self.clock.now()
        approval = await self.repo.create(
            action=action, args=args, requested_by=user.id, requested_by_name=user.full_name,
            chat_id=chat_id, lang=lang, now=now, expires_at=now + self.ttl)
        text = self._pending_text(summary)
        message = await bot.send_message(chat_id, text, reply_markup=self.keyboard(approval.id))
        await self.repo.attach_message(approval.id, message.message_id)
        return approval

    def _pending_text(self, summary: str) -> str:
        seconds = int(self.ttl.total_seconds())
        if self.two_person:
            note = _("A second admin must confirm within {s} s.").format(s=seconds)
        else:
            note = _("Confirm within {s} s.").format(s=seconds)
        return f"{summary}\n\n{note}"

    @staticmethod
    def keyboard(approval_id: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(inline_keyboard=[[
            InlineKeyboardButton(text=_("✅ Confirm"), callback_data=ApprovalCallback(
                id=approval_id, yes=True).pack()),
            InlineKeyboardButton(text=_("✖️ Cancel"), callback_data=ApprovalCallback(
                id=approval_id, yes=False).pack())]])

    # --- deciding ------------------------------------------------------------------------------
    async def decide(self, bot: Bot, approval_id: str, *, yes: bool, user: User,
                     role: Role) -> str:
        approval = await self.repo.get(approval_id)
        if approval is None:
            return Decision.UNKNOWN
        now = self.clock.now()
        if approval.status is not ApprovalStatus.PENDING:
            return Decision.EXPIRED if approval.status is ApprovalStatus.EXPIRED \
                else Decision.ALREADY
        is_requester = user.id == approval.requested_by
        if not yes:
            if not (is_requester or role >= Role.ADMIN):
                return Decision.NOT_ALLOWED
            if not await self.repo.cancel(approval_id, user.id, now):
                return Decision.ALREADY
            with self.i18n.use_locale(approval.lang):
                await self._edit(bot, approval, _("✖️ Cancelled by {who}: nothing was done."
                                                  ).format(who=user.full_name))
            return Decision.CANCELLED
        if self.two_person and is_requester:
            return Decision.SECOND_ADMIN
        if not (role >= Role.ADMIN or (is_requester and not self.two_person)):
            return Decision.NOT_ALLOWED
        if not await self.repo.claim(approval_id, user.id, now):
            fresh = await self.repo.get(approval_id)
            expired = fresh is not None and (fresh.status is ApprovalStatus.EXPIRED
                                             or fresh.expires_at <= now)
            return Decision.EXPIRED if expired else Decision.ALREADY
        by = f"{user.full_name} ({user.id})"
        with self.i18n.use_locale(approval.lang):  # the message speaks the requester's language
            try:
                outcome = await self._executors[approval.action](approval, by)
            except Exception as exc:  # recorded and shown; the approval never runs again
                logger.exception("approval {} failed", approval_id)
                outcome = _("❌ Failed: {error}").format(error=exc)
            await self.repo.finish(approval_id, outcome)
            await self._edit(bot, approval, _("Confirmed by {who}:").format(
                who=user.full_name) + "\n" + outcome)
        return Decision.DONE

    async def _edit(self, bot: Bot, approval: Approval, result: str) -> None:
        if approval.message_id is None:
            return
        summary = await self.summary_of(approval)
        try:
            await bot.edit_message_text(text=f"{summary}\n\n{result}", chat_id=approval.chat_id,
                                        message_id=approval.message_id, reply_markup=None)
        except TelegramBadRequest as exc:  # deleted, too old, or not modified
            logger.warning("could not edit approval message {}: {}", approval.id, exc)

    async def summary_of(self, approval: Approval) -> str:
        args = approval.args
        if approval.action == "close":
            return render.close_summary([close_target(t) for t in args["targets"]])
        if approval.action == "cancel_all":
            return render.cancel_summary([_order_target(o) for o in args["orders"]])
        return _("Lift the HOLD set by the daily loss limit: {reason}").format(
            reason=args.get("reason", ""))

    # --- expiry and recovery ---------------------------------------------------------------------
    async def recover(self, bot: Bot) -> list[Approval]:
        """At start-up: an approval claimed but never finished was cut off by a crash. It is
        never re-run (it may have half happened); its message says to check the positions."""
        interrupted = await self.repo.interrupted()
        for approval in interrupted:
            with self.i18n.context(), self.i18n.use_locale(approval.lang):
                note = _("⚠️ Vigil restarted while this was running; check /positions.")
                await self.repo.finish(approval.id, note)
                await self._edit(bot, approval, note)
        return interrupted

    async def expire_loop(self, bot: Bot, period: float = 1.0) -> None:
        try:
            await self.recover(bot)
        except Exception:
            logger.exception("could not report approvals interrupted by a restart")
        while True:
            try:
                await self.expire_due(bot)
            except Exception:  # Telegram or the database hiccuped: try again next period
                logger.exception("approval expiry failed; trying again")
            await self.clock.sleep(period)

    async def expire_due(self, bot: Bot) -> list[Approval]:
        expired = await self.repo.expire_due(self.clock.now())
        for approval in expired:
            with self.i18n.context(), self.i18n.use_locale(approval.lang):
                await self._edit(bot, approval, _("⌛ Expired: nothing was done."))
        return expired

    # --- executors -----------------------------------------------------------------------------
    async def _close(self, approval: Approval, by: str) -> str:
        targets = [close_target(t) for t in approval.args["targets"]]
        return render.close_outcomes(await self.control.close(targets, by))

    async def _cancel_all(self, approval: Approval, by: str) -> str:
        targets = [_order_target(o) for o in approval.args["orders"]]
        return render.cancel_outcomes(await self.control.cancel(targets, by))

    async def _resume(self, approval: Approval, by: str) -> str:
        result = await self.control.resume(by)
        return _("▶️ HOLD lifted: new entries are allowed.") if result.changed \
            else _("Not on HOLD; nothing to resume.")


def to_args(target: OrderTarget | CloseTarget) -> dict[str, Any]:
    """JSON-safe: Decimals as strings, enums as values."""
    return {k: (str(v) if isinstance(v, Decimal | StrEnum) else v)
            for k, v in asdict(target).items()}


def close_target(raw: dict[str, Any]) -> CloseTarget:
    return CloseTarget(account=raw["account"], symbol=raw["symbol"],
                       side=PositionSide(raw["side"]), qty=Decimal(raw["qty"]),
                       mark_price=Decimal(raw["mark_price"]),
                       unrealized_pnl=Decimal(raw["unrealized_pnl"]),
                       generation=raw.get("generation"))


def _order_target(raw: dict[str, Any]) -> OrderTarget:
    return OrderTarget(
        account=raw["account"], symbol=raw["symbol"], order_id=raw["order_id"],
        kind=OrderKind(raw["kind"]), side=OrderSide(raw["side"]),
        qty=Decimal(raw["qty"]) if raw.get("qty") is not None else None,
        price=Decimal(raw["price"]) if raw.get("price") is not None else None)
