"""Approvals: risky actions wait for a person's Confirm. The rules live here, not in the chat.

An approval is stored (it survives restarts) and claimed with one conditional update, so it runs
at most once however many taps arrive. The requester or an admin may confirm (with the two-person
rule, only an admin other than the requester); the requester or an admin may cancel; past its
expiry nothing can be done with it. The chat layer draws the buttons and renders the outcome.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from engine.clock import Clock
from engine.control import ControlService
from engine.domain.reports import OrderKind
from engine.domain.values import OrderSide, PositionSide
from engine.entries.model import EntryRequest, EntryResult, request_from_json, request_to_json
from engine.exits.requests import MoveResult, MoveStatus
from engine.results import CancelOutcome, CloseOutcome, CloseTarget, HoldResult, OrderTarget


class ApprovalAction(StrEnum):
    CLOSE = "close"
    CANCEL_ALL = "cancel_all"
    RESUME = "resume"  # lift a loss-cap HOLD
    OPEN = "open"  # an entry (engine/entries), exactly as previewed
    MOVE_STOP = "move_stop"  # a looser stop by hand (/sl)


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    EXECUTING = "executing"
    DONE = "done"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Decision(StrEnum):
    """What a tap did."""

    DONE = "done"
    CANCELLED = "cancelled"
    NOT_ALLOWED = "not_allowed"
    SECOND_ADMIN = "second_admin"
    ALREADY = "already"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    NEEDS_ADMIN = "needs_admin"  # an entry over the notional threshold


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    action: ApprovalAction
    args: dict[str, Any]
    requested_by: int
    requested_by_name: str
    chat_id: int
    message_id: int | None
    lang: str
    created_at: datetime
    expires_at: datetime
    status: ApprovalStatus
    decided_by: int | None
    outcome: str | None

    def close_targets(self) -> list[CloseTarget]:
        return [_close_target(raw) for raw in self.args.get("targets", [])]

    def order_targets(self) -> list[OrderTarget]:
        return [_order_target(raw) for raw in self.args.get("orders", [])]

    def stop_moves(self) -> list[MoveResult]:
        return [MoveResult(raw["account"], raw["symbol"], MoveStatus.NEEDS_CONFIRM,
                           old=_decimal(raw["old"]), new=_decimal(raw["new"]),
                           mark=_decimal(raw["mark"]))
                for raw in self.args.get("moves", [])]


class ApprovalStore(Protocol):
    """Where approvals persist (SQLite: storage/approvals.py). Status changes are single
    conditional updates: True for the one caller that made the change."""

    async def create(self, *, action: str, args: dict[str, Any], requested_by: int,
                     requested_by_name: str, chat_id: int, lang: str, now: datetime,
                     expires_at: datetime) -> Approval: ...

    async def attach_message(self, approval_id: str, message_id: int) -> None: ...

    async def get(self, approval_id: str) -> Approval | None: ...

    async def claim(self, approval_id: str, by: int, now: datetime) -> bool: ...

    async def cancel(self, approval_id: str, by: int, now: datetime) -> bool: ...

    async def finish(self, approval_id: str, outcome: str) -> None: ...

    async def expire_due(self, now: datetime) -> list[Approval]: ...

    async def interrupted(self) -> list[Approval]: ...


ActionResult = (list[CloseOutcome] | list[CancelOutcome] | HoldResult | EntryResult
                | list[MoveResult])


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    approval: Approval | None = None
    result: ActionResult | None = None  # what the action did (DONE only)
    error: str | None = None  # DONE, but the action raised: recorded, never run again


class Approvals:
    def __init__(self, store: ApprovalStore, control: ControlService, *, clock: Clock,
                 ttl_seconds: int, two_person: bool) -> None:
        self.store = store
        self.control = control
        self.clock = clock
        self.ttl = timedelta(seconds=ttl_seconds)
        self.two_person = two_person

    async def request_close(self, targets: list[CloseTarget], **who: Any) -> Approval:
        return await self._request(ApprovalAction.CLOSE,
                                   {"targets": [_json(t) for t in targets]}, **who)

    async def request_cancel(self, targets: list[OrderTarget], **who: Any) -> Approval:
        return await self._request(ApprovalAction.CANCEL_ALL,
                                   {"orders": [_json(t) for t in targets]}, **who)

    async def request_open(self, request: EntryRequest, *, needs_admin: bool,
                           **who: Any) -> Approval:
        """An entry; over the notional threshold only an admin may confirm it."""
        return await self._request(ApprovalAction.OPEN, {
            "request": request_to_json(request), "needs_admin": needs_admin}, **who)

    async def request_resume(self, reason: str, **who: Any) -> Approval:
        return await self._request(ApprovalAction.RESUME, {"reason": reason}, **who)

    async def request_stop_moves(self, moves: list[MoveResult], **who: Any) -> Approval:
        return await self._request(ApprovalAction.MOVE_STOP, {"moves": [
            {"account": m.account, "symbol": m.symbol, "old": str(m.old), "new": str(m.new),
             "mark": str(m.mark)} for m in moves]}, **who)

    async def _request(self, action: ApprovalAction, args: dict[str, Any], *, user_id: int,
                       user_name: str, chat_id: int, lang: str) -> Approval:
        now = self.clock.now()
        return await self.store.create(
            action=action.value, args=args, requested_by=user_id, requested_by_name=user_name,
            chat_id=chat_id, lang=lang, now=now, expires_at=now + self.ttl)

    async def attach_message(self, approval_id: str, message_id: int) -> None:
        await self.store.attach_message(approval_id, message_id)

    async def decide(self, approval_id: str, *, yes: bool, user_id: int, user_name: str,
                     is_admin: bool) -> Verdict:
        """A tap. Confirm runs the action (at most once, ever); Cancel records it."""
        approval = await self.store.get(approval_id)
        if approval is None:
            return Verdict(Decision.UNKNOWN)
        now = self.clock.now()
        if approval.status is not ApprovalStatus.PENDING:
            expired = approval.status is ApprovalStatus.EXPIRED
            return Verdict(Decision.EXPIRED if expired else Decision.ALREADY, approval)
        if approval.expires_at <= now:  # past its time, even before the expiry loop marks it
            return Verdict(Decision.EXPIRED, approval)
        is_requester = user_id == approval.requested_by
        if not yes:
            if not (is_requester or is_admin):
                return Verdict(Decision.NOT_ALLOWED, approval)
            if not await self.store.cancel(approval_id, user_id, now):
                return Verdict(Decision.ALREADY, approval)
            return Verdict(Decision.CANCELLED, approval)
        if self.two_person and is_requester:
            return Verdict(Decision.SECOND_ADMIN, approval)
        if not (is_admin or (is_requester and not self.two_person)):
            return Verdict(Decision.NOT_ALLOWED, approval)
        if approval.args.get("needs_admin") and not is_admin:
            return Verdict(Decision.NEEDS_ADMIN, approval)
        if not await self.store.claim(approval_id, user_id, now):
            fresh = await self.store.get(approval_id)
            expired = fresh is not None and (fresh.status is ApprovalStatus.EXPIRED
                                             or fresh.expires_at <= now)
            return Verdict(Decision.EXPIRED if expired else Decision.ALREADY, approval)
        by = f"{user_name} ({user_id})"
        try:
            result = await self._execute(approval, by)
        except Exception as exc:  # recorded by the caller's finish(); never runs again
            return Verdict(Decision.DONE, approval, error=str(exc))
        return Verdict(Decision.DONE, approval, result)

    async def _execute(self, approval: Approval, by: str) -> ActionResult:
        match approval.action:
            case ApprovalAction.CLOSE:
                return await self.control.close(approval.close_targets(), by)
            case ApprovalAction.CANCEL_ALL:
                return await self.control.cancel(approval.order_targets(), by)
            case ApprovalAction.RESUME:
                return await self.control.resume(by)
            case ApprovalAction.OPEN:
                # One approval, one entry: a signal keeps its own key (the sender's retries
                # then get this entry's result), a chat request takes the approval's id.
                request = request_from_json(approval.args["request"])
                return await self.control.open(replace(
                    request, key=request.key or f"tg-{approval.id}", by=by))
            case ApprovalAction.MOVE_STOP:
                return await self.control.confirm_stop_moves(approval.stop_moves())

    async def status(self, approval_id: str) -> ApprovalStatus | None:
        """Past its expiry a pending approval is expired, as `decide` treats it, even before
        the sweep has written that down."""
        approval = await self.store.get(approval_id)
        if approval is None:
            return None
        if approval.status is ApprovalStatus.PENDING and approval.expires_at <= self.clock.now():
            return ApprovalStatus.EXPIRED
        return approval.status

    async def finish(self, approval_id: str, outcome: str) -> None:
        """Record what the action did, as shown to the person."""
        await self.store.finish(approval_id, outcome)

    async def expire_due(self) -> list[Approval]:
        return await self.store.expire_due(self.clock.now())

    async def interrupted(self) -> list[Approval]:
        """Claimed but never finished: a crash mid-execution. Reported, never re-run."""
        return await self.store.interrupted()


def _json(target: OrderTarget | CloseTarget) -> dict[str, Any]:
    """JSON-safe: Decimals as strings, enums as values."""
    return {k: (str(v) if isinstance(v, Decimal | StrEnum) else v)
            for k, v in asdict(target).items()}


def _decimal(raw: Any) -> Decimal | None:
    return Decimal(raw) if raw is not None else None


def _close_target(raw: dict[str, Any]) -> CloseTarget:
    return CloseTarget(account=raw["account"], symbol=raw["symbol"],
                       side=PositionSide(raw["side"]), qty=Decimal(raw["qty"]),
                       mark_price=Decimal(raw["mark_price"]),
                       unrealized_pnl=Decimal(raw["unrealized_pnl"]),
                       generation=raw.get("generation"))


def _order_target(raw: dict[str, Any]) -> OrderTarget:
    return OrderTarget(account=raw["account"], symbol=raw["symbol"], order_id=raw["order_id"],
                       kind=OrderKind(raw["kind"]), side=OrderSide(raw["side"]),
                       qty=_decimal(raw.get("qty")), price=_decimal(raw.get("price")))
