"""The closed set of engine events. Each is journaled (hash-chained) and may become an alert."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum
from typing import Any, ClassVar

from engine.domain.reports import OrderKind
from engine.domain.values import PositionSide


class Severity(IntEnum):
    DEBUG = 0  # journaled only
    INFO = 1  # silent alert
    WARNING = 2
    CRITICAL = 3  # loud alert


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- the vocabulary events speak (journaled as their values) ---------------------------------
class StopAction(StrEnum):
    PLACE = "place"
    AMEND = "amend"
    REPLACE = "replace"  # a new stop placed before the old one is cancelled


class CancelReason(StrEnum):
    DUPLICATE = "duplicate"
    WRONG_SIDE = "wrong_side"
    REPLACED = "replaced"
    POSITION_CLOSED = "position_closed"
    ZOMBIE = "zombie"
    CANCEL_ALL = "cancel_all"
    ENTRY_TIMEOUT = "entry_timeout"  # a limit entry's unfilled rest, at its timeout
    ENTRY_CUT = "entry_cut"  # ... ended early: a /close or /cancel_all of its symbol came
    ENTRY_HALT = "entry_halt"  # ... ended by a HALT (the one command HALT still sends)
    TAKE_PROFIT_OFF = "take_profit_off"  # the plan has no take-profit (any more)


class CloseReason(StrEnum):
    STOP_CROSSED = "stop_crossed"  # the stop would trigger at once and the policy closes
    MANUAL = "manual"  # a person asked (after an approval)
    ON_VENUE = "closed on venue"  # stopped out, closed by hand, liquidated
    ROLLBACK = "rollback"  # an entry whose stop could not rest is closed again
    TAKE_PROFIT = "take_profit"  # our take-profit (the exit plan's) fired: the TP-hit alert


class CrossedAction(StrEnum):
    CLOSE = "close"
    TIGHTEN = "tighten"


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    severity: ClassVar[Severity] = Severity.DEBUG
    # An intent: the engine must not call the venue before it is committed, so publishing it
    # waits for its journal batch to commit; other events are written in the background.
    durable: ClassVar[bool] = False
    account: str
    at: datetime = field(default_factory=utcnow)

    def payload(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True, kw_only=True)
class SymbolEvent(Event):
    symbol: str


# --- engine and account state ---------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class EngineStarted(Event):
    kind = "engine_started"
    severity = Severity.INFO
    mode: str


@dataclass(frozen=True, kw_only=True)
class EngineStopped(Event):
    kind = "engine_stopped"


@dataclass(frozen=True, kw_only=True)
class HoldSet(Event):
    kind = "hold_set"
    severity = Severity.WARNING
    reason: str
    by: str


@dataclass(frozen=True, kw_only=True)
class HoldReleased(Event):
    kind = "hold_released"
    severity = Severity.WARNING
    by: str


@dataclass(frozen=True, kw_only=True)
class LossLimitHit(Event):
    kind = "loss_limit_hit"
    severity = Severity.CRITICAL
    pnl: Decimal
    limit: Decimal


@dataclass(frozen=True, kw_only=True)
class AccountHalted(Event):
    kind = "account_halted"
    severity = Severity.CRITICAL
    reason: str


@dataclass(frozen=True, kw_only=True)
class VenueFailure(Event):
    kind = "venue_failure"
    severity = Severity.WARNING
    operation: str
    error: str
    message: str


@dataclass(frozen=True, kw_only=True)
class StreamChanged(Event):
    kind = "stream_changed"
    severity = Severity.INFO
    up: bool
    reason: str = ""


# --- positions ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PositionAdopted(SymbolEvent):
    """A position the journal did not know (opened by hand, or before we started)."""

    kind = "position_adopted"
    severity = Severity.WARNING
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    generation: int
    entry: str = ""  # the key of Vigil's own entry that opened it: guarded, not "found"


@dataclass(frozen=True, kw_only=True)
class PositionResized(SymbolEvent):
    kind = "position_resized"
    severity = Severity.INFO
    old_qty: Decimal
    new_qty: Decimal
    entry_price: Decimal | None = None  # the venue's average entry after it (None: older rows)


@dataclass(frozen=True, kw_only=True)
class PositionClosed(SymbolEvent):
    kind = "position_closed"
    severity = Severity.INFO
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal | None
    realized_pnl: Decimal | None
    reason: CloseReason


@dataclass(frozen=True, kw_only=True)
class ExitPlanDropped(SymbolEvent):
    """A stored exit plan (or trail state) whose position is gone: closed while Vigil was
    stopped, or the symbol now holds another position. Dropped, never inherited by it."""

    kind = "exit_plan_dropped"
    severity = Severity.INFO
    generation: int | None  # the position it was made for
    side: PositionSide | None
    entry_price: Decimal | None
    why: str  # "position_gone" (not in the journal) | "position_replaced" (the venue's differs)
    take_profit: Decimal | None = None
    trailing: bool = False
    breakeven: bool = False  # or a step ladder


# --- protection ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class StopMissing(SymbolEvent):
    kind = "stop_missing"
    severity = Severity.WARNING
    side: PositionSide
    qty: Decimal


@dataclass(frozen=True, kw_only=True)
class StopIntent(SymbolEvent):
    """Written before the venue is called, with the client id the call will carry."""

    kind = "stop_intent"
    durable = True
    action: StopAction
    client_id: str
    trigger_price: Decimal
    qty: Decimal


@dataclass(frozen=True, kw_only=True)
class StopPlaced(SymbolEvent):
    kind = "stop_placed"
    severity = Severity.INFO
    order_id: str
    client_id: str
    trigger_price: Decimal
    qty: Decimal
    time_to_protect: Decimal | None  # seconds the position had no stop; None when replacing


@dataclass(frozen=True, kw_only=True)
class StopAdopted(SymbolEvent):
    """A stop already resting on the venue (placed by hand or before a restart) is now ours."""

    kind = "stop_adopted"
    order_id: str
    client_id: str | None
    trigger_price: Decimal | None
    qty: Decimal | None


@dataclass(frozen=True, kw_only=True)
class StopAmended(SymbolEvent):
    kind = "stop_amended"
    order_id: str
    trigger_price: Decimal
    qty: Decimal


@dataclass(frozen=True, kw_only=True)
class StopMoved(SymbolEvent):
    """The stop was moved to a new price (trailing, breakeven, /sl): a silent alert whose text
    carries no price, so the ones still waiting in a chat's outbox coalesce into one."""

    kind = "stop_moved"
    severity = Severity.INFO
    old_price: Decimal
    new_price: Decimal


@dataclass(frozen=True, kw_only=True)
class StopMoveFailed(SymbolEvent):
    """The venue did not take a stop move (refused, or failing past the retries): loud, once
    per position until a move succeeds. The old stop still rests: the position is protected,
    but the trail, breakeven or /sl did not happen."""

    kind = "stop_move_failed"
    severity = Severity.CRITICAL
    old_price: Decimal | None
    new_price: Decimal
    reason: str
    message: str


@dataclass(frozen=True, kw_only=True)
class CancelIntent(SymbolEvent):
    """Written before a cancel is sent, like every other intent."""

    kind = "cancel_intent"
    durable = True
    order_id: str
    client_id: str | None
    reason: CancelReason
    by: str = ""  # who asked, for a person's cancel


@dataclass(frozen=True, kw_only=True)
class StopCancelled(SymbolEvent):
    kind = "stop_cancelled"
    order_id: str
    client_id: str | None
    reason: CancelReason


@dataclass(frozen=True, kw_only=True)
class StopRejected(SymbolEvent):
    kind = "stop_rejected"
    severity = Severity.WARNING
    client_id: str
    reason: str
    message: str


@dataclass(frozen=True, kw_only=True)
class StopCannotRest(SymbolEvent):
    """The venue keeps refusing the stop for a reason retrying will not fix: a person must act.
    The position stays on the SLA clock; Vigil tries again after `retry_in_seconds` or as soon
    as the position changes."""

    kind = "stop_cannot_rest"
    severity = Severity.CRITICAL
    reason: str
    message: str
    attempts: int
    retry_in_seconds: Decimal
    generation: int | None = None  # which position (the alert's [Close] closes only this one)


@dataclass(frozen=True, kw_only=True)
class StopCrossed(SymbolEvent):
    """The stop we would place is already through the mark: close or tighten per policy."""

    kind = "stop_crossed"
    severity = Severity.CRITICAL
    stop_price: Decimal
    mark_price: Decimal
    action: CrossedAction


@dataclass(frozen=True, kw_only=True)
class CloseIntent(SymbolEvent):
    kind = "close_intent"
    durable = True
    client_id: str
    qty: Decimal
    reason: CloseReason
    by: str = ""


@dataclass(frozen=True, kw_only=True)
class CloseSubmitted(SymbolEvent):
    kind = "close_submitted"
    severity = Severity.INFO
    order_id: str
    qty: Decimal
    reason: CloseReason
    by: str = ""


@dataclass(frozen=True, kw_only=True)
class CloseSideGone(SymbolEvent):
    """Our close was not found on the venue and the position is on the other side now:
    someone else reversed it. The close did not run (reduce-only, it cannot); never "closed"."""

    kind = "close_side_gone"
    severity = Severity.WARNING
    client_id: str
    side: PositionSide  # the side the close was for
    now: PositionSide  # the side the venue shows
    qty: Decimal


@dataclass(frozen=True, kw_only=True)
class ZombieCancelled(SymbolEvent):
    kind = "zombie_cancelled"
    severity = Severity.WARNING
    order_id: str
    client_id: str | None
    order_kind: OrderKind


@dataclass(frozen=True, kw_only=True)
class SlaBreached(SymbolEvent):
    kind = "sla_breached"
    severity = Severity.CRITICAL
    unprotected_seconds: Decimal
    generation: int | None = None  # which position (the alert's [Close] closes only this one)


# --- entries (engine/entries) -----------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class EntryIntent(SymbolEvent):
    """Written before an entry order is sent: its idempotency key and client id."""

    kind = "entry_intent"
    durable = True
    key: str
    client_id: str
    side: PositionSide
    qty: Decimal
    stop_price: Decimal
    attached: bool  # the stop rides on the entry order
    source: str
    by: str = ""


@dataclass(frozen=True, kw_only=True)
class EntryFilled(SymbolEvent):
    kind = "entry_filled"
    key: str
    order_id: str
    qty: Decimal  # what filled (0: nothing)


@dataclass(frozen=True, kw_only=True)
class EntryProtected(SymbolEvent):
    kind = "entry_protected"
    severity = Severity.INFO
    key: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    stop_price: Decimal
    time_to_protect: Decimal  # seconds from the first fill to the stop resting; 0 if attached
    source: str


@dataclass(frozen=True, kw_only=True)
class EntryRollbackStep(SymbolEvent):
    """One step of a rollback (why, close sent, flat confirmed, leftovers cancelled)."""

    kind = "entry_rollback_step"
    key: str
    step: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class EntryRolledBack(SymbolEvent):
    """The entry's stop could not rest: what filled was closed and the venue shows it flat."""

    kind = "entry_rolled_back"
    severity = Severity.CRITICAL
    key: str
    reason: str
    qty: Decimal
    pnl: Decimal  # the round trip, fees included where known


@dataclass(frozen=True, kw_only=True)
class EntryRollbackFailed(SymbolEvent):
    """Even the rollback close failed: the account is halted, the position is NOT protected."""

    kind = "entry_rollback_failed"
    severity = Severity.CRITICAL
    key: str
    reason: str
    qty: Decimal
    attempts: int


@dataclass(frozen=True, kw_only=True)
class EntryRestLeft(SymbolEvent):
    """HALT came while a limit entry rested and its cancel failed: the order still rests on
    the venue and what fills of it gets no new stop until /resume. A person cancels it there."""

    kind = "entry_rest_left"
    severity = Severity.CRITICAL
    key: str
    order_id: str
    side: PositionSide
    price: Decimal | None
    qty: Decimal  # the unfilled rest
    reason: str


@dataclass(frozen=True, kw_only=True)
class EntryRefused(Event):
    """A risk gate said no; the requester is told (journal-only here)."""

    kind = "entry_refused"
    key: str
    symbol: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class SignalsFailing(Event):
    """A webhook source keeps sending signals that are refused before any order (bad signature,
    stale, malformed...): someone may be probing, or its sender is misconfigured."""

    kind = "signals_failing"
    severity = Severity.WARNING
    source: str
    failures: int
    reason: str


# --- take-profits (issue 12): the exit plan's reduce-only TP, placed by the supervisor -------
@dataclass(frozen=True, kw_only=True)
class TakeProfitIntent(SymbolEvent):
    """About to place the position's take-profit (journaled before the venue is called)."""

    kind = "take_profit_intent"
    durable = True
    client_id: str
    trigger_price: Decimal
    qty: Decimal


@dataclass(frozen=True, kw_only=True)
class TakeProfitPlaced(SymbolEvent):
    kind = "take_profit_placed"
    order_id: str
    client_id: str | None
    trigger_price: Decimal
    qty: Decimal


@dataclass(frozen=True, kw_only=True)
class TakeProfitCancelled(SymbolEvent):
    kind = "take_profit_cancelled"
    order_id: str
    reason: CancelReason


@dataclass(frozen=True, kw_only=True)
class TakeProfitRejected(SymbolEvent):
    """The venue refused the take-profit; it is tried again when the plan or the size changes.
    The stop is untouched: a take-profit is never protection."""

    kind = "take_profit_rejected"
    severity = Severity.WARNING
    trigger_price: Decimal
    reason: str
    message: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        EngineStarted, EngineStopped, HoldSet, HoldReleased, LossLimitHit, AccountHalted,
        VenueFailure, StreamChanged, PositionAdopted, PositionResized, PositionClosed,
        ExitPlanDropped,
        StopMissing, StopIntent, CancelIntent, StopPlaced, StopAdopted, StopAmended, StopCancelled,
        StopMoved, StopMoveFailed,
        StopRejected, StopCannotRest, StopCrossed, CloseIntent, CloseSubmitted, CloseSideGone,
        ZombieCancelled, SlaBreached, EntryIntent, EntryFilled, EntryProtected,
        EntryRollbackStep, EntryRolledBack, EntryRollbackFailed, EntryRestLeft, EntryRefused,
        SignalsFailing,
        TakeProfitIntent, TakeProfitPlaced, TakeProfitCancelled, TakeProfitRejected,
    )
}


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _decode(hint: Any, raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        concrete = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(concrete[0], raw)
    if hint is Decimal:
        return Decimal(raw)
    if hint is datetime:
        return datetime.fromisoformat(raw)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return hint(raw)
    return raw


def event_from_payload(kind: str, payload: dict[str, Any]) -> Event:
    cls = EVENT_TYPES[kind]
    hints = typing.get_type_hints(cls)
    return cls(**{name: _decode(hints[name], value) for name, value in payload.items()})
