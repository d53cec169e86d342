"""Risky actions wait for a tap: a summary of exactly what will happen, Confirm / Cancel.

The rules (who may decide, two-person, expiry, at most once) are the engine's
(`engine/approvals.py`); this is the chat side: the message, its buttons, and the edits that say
what happened. Expired ones lose their buttons and say so.
"""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from loguru import logger

from bot import exits_text, render, render_entries
from bot.roles import Role
from engine.approvals import (
    ActionResult,
    Approval,
    ApprovalAction,
    Approvals,
    Decision,
    Verdict,
)
from engine.control import CloseTarget, OrderTarget
from engine.entries.model import EntryPlan, EntryRequest, EntryResult, request_from_json
from engine.exits.requests import MoveResult
from engine.results import HoldResult

SIGNAL_REQUESTER = 0  # no Telegram user has id 0: a webhook's approval has no requester


class ApprovalCallback(CallbackData, prefix="ap"):
    id: str
    yes: bool


class ApprovalService:
    def __init__(self, approvals: Approvals, *, i18n: I18n) -> None:
        self.approvals = approvals
        self.i18n = i18n

    @property
    def ttl_seconds(self) -> int:
        return int(self.approvals.ttl.total_seconds())

    # --- asking --------------------------------------------------------------------------------
    async def ask_close(self, bot: Bot, *, chat_id: int, user: User, lang: str,
                        targets: list[CloseTarget]) -> Approval:
        approval = await self.approvals.request_close(targets, **_who(user, chat_id, lang))
        return await self._send(bot, approval, render.close_summary(targets))

    async def ask_cancel(self, bot: Bot, *, chat_id: int, user: User, lang: str,
                         targets: list[OrderTarget]) -> Approval:
        approval = await self.approvals.request_cancel(targets, **_who(user, chat_id, lang))
        return await self._send(bot, approval, render.cancel_summary(targets))

    async def ask_open(self, bot: Bot, *, chat_id: int, user: User, lang: str,
                       request: EntryRequest, plan: EntryPlan, needs_admin: bool) -> Approval:
        approval = await self.approvals.request_open(request, needs_admin=needs_admin,
                                                     **_who(user, chat_id, lang))
        return await self._send(bot, approval, render_entries.summary(
            plan, needs_admin=needs_admin))

    async def ask_signal(self, bot: Bot, *, chat_id: int, lang: str, request: EntryRequest,
                         plan: EntryPlan) -> Approval:
        """A webhook signal over `[signals] confirm_notional`: only an admin may confirm it
        (the sender counts as the first person of the two-person rule)."""
        approval = await self.approvals.request_open(
            request, needs_admin=True, user_id=SIGNAL_REQUESTER, user_name=request.by,
            chat_id=chat_id, lang=lang)
        with self.i18n.context(), self.i18n.use_locale(lang):  # outside any chat update
            head = _("📨 Signal from {who}: an admin must confirm it.").format(
                who=render.echo(request.by))
            return await self._send(bot, approval, head + "\n" + render_entries.summary(
                plan, needs_admin=True))

    async def ask_resume(self, bot: Bot, *, chat_id: int, user: User, lang: str,
                         reason: str) -> Approval:
        approval = await self.approvals.request_resume(reason, **_who(user, chat_id, lang))
        return await self._send(bot, approval, self.summary_of(approval))

    async def ask_stop_moves(self, bot: Bot, *, chat_id: int, user: User, lang: str,
                             moves: list[MoveResult]) -> Approval:
        approval = await self.approvals.request_stop_moves(moves, **_who(user, chat_id, lang))
        return await self._send(bot, approval, exits_text.loosen_summary(moves))

    async def _send(self, bot: Bot, approval: Approval, summary: str) -> Approval:
        message = await bot.send_message(approval.chat_id, self._pending_text(summary),
                                         reply_markup=self.keyboard(approval.id))
        await self.approvals.attach_message(approval.id, message.message_id)
        return approval

    def _pending_text(self, summary: str) -> str:
        seconds = self.ttl_seconds
        if self.approvals.two_person:
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
                     role: Role) -> Decision:
        verdict = await self.approvals.decide(approval_id, yes=yes, user_id=user.id,
                                              user_name=render.clean(user.full_name,
                                                                     render.NAME_LIMIT),
                                              is_admin=role >= Role.ADMIN)
        approval = verdict.approval
        if approval is None:
            return verdict.decision
        with self.i18n.use_locale(approval.lang):  # the message speaks the requester's language
            if verdict.decision is Decision.CANCELLED:
                await self._edit(bot, approval, _("✖️ Cancelled by {who}: nothing was done."
                                                  ).format(who=render.shown_user(
                                                      user.full_name, user.id)))
            elif verdict.decision is Decision.DONE:
                outcome = _outcome_text(verdict)
                await self.approvals.finish(approval.id, outcome)
                await self._edit(bot, approval, _("Confirmed by {who}:").format(
                    who=render.shown_user(user.full_name, user.id)) + "\n" + outcome)
        return verdict.decision

    async def _edit(self, bot: Bot, approval: Approval, result: str) -> None:
        if approval.message_id is None:
            return
        summary = self.summary_of(approval)
        try:
            await bot.edit_message_text(text=f"{summary}\n\n{result}", chat_id=approval.chat_id,
                                        message_id=approval.message_id, reply_markup=None)
        except TelegramBadRequest as exc:  # deleted, too old, or not modified
            logger.warning("could not edit approval message {}: {}", approval.id, exc)

    @staticmethod
    def summary_of(approval: Approval) -> str:
        match approval.action:
            case ApprovalAction.CLOSE:
                return render.close_summary(approval.close_targets())
            case ApprovalAction.CANCEL_ALL:
                return render.cancel_summary(approval.order_targets())
            case ApprovalAction.OPEN:
                request = request_from_json(approval.args["request"])
                return _("Open {side} {symbol} ({size}) with its stop").format(
                    side=render.side_label(request.side), symbol=render.echo(request.symbol),
                    size=render.num(request.size.value))
            case ApprovalAction.MOVE_STOP:
                return exits_text.loosen_summary(approval.stop_moves())
        return _("Lift the HOLD set by the daily loss limit: {reason}").format(
            reason=approval.args.get("reason", ""))

    # --- expiry and recovery ---------------------------------------------------------------------
    async def recover(self, bot: Bot) -> list[Approval]:
        """At start-up: an approval claimed but never finished was cut off by a crash. It is
        never re-run (it may have half happened); its message says to check the positions."""
        interrupted = await self.approvals.interrupted()
        for approval in interrupted:
            with self.i18n.context(), self.i18n.use_locale(approval.lang):
                note = _("⚠️ Vigil restarted while this was running; check /positions.")
                await self.approvals.finish(approval.id, note)
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
            await self.approvals.clock.sleep(period)

    async def expire_due(self, bot: Bot) -> list[Approval]:
        expired = await self.approvals.expire_due()
        for approval in expired:
            with self.i18n.context(), self.i18n.use_locale(approval.lang):
                await self._edit(bot, approval, _("⌛ Expired: nothing was done."))
        return expired


def _who(user: User, chat_id: int, lang: str) -> dict[str, object]:
    return {"user_id": user.id, "user_name": render.clean(user.full_name, render.NAME_LIMIT),
            "chat_id": chat_id, "lang": lang}


def _outcome_text(verdict: Verdict) -> str:
    if verdict.error is not None:
        return _("❌ Failed: {error}").format(error=verdict.error)
    result: ActionResult | None = verdict.result
    if isinstance(result, EntryResult):
        return render_entries.outcome(result)
    if isinstance(result, HoldResult):
        return _("▶️ HOLD lifted: new entries are allowed.") if result.changed \
            else _("Not on HOLD; nothing to resume.")
    assert verdict.approval is not None and result is not None
    if verdict.approval.action is ApprovalAction.MOVE_STOP:
        return exits_text.move_results(result)  # type: ignore[arg-type]
    if verdict.approval.action is ApprovalAction.CLOSE:
        return render.close_outcomes(result)  # type: ignore[arg-type]
    return render.cancel_outcomes(result)  # type: ignore[arg-type]
