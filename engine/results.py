"""Typed answers of the engine's read model and control commands.

The bot (and the HTTP surface later) renders these; nothing here knows about Telegram, and none of
it exposes the guard's internals (its view, supervisors or venue).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from engine.domain import events as ev
from engine.domain.reports import OrderKind
from engine.domain.values import OrderSide, PositionSide
from engine.exits.plan import ExitView


class HoldKind(StrEnum):
    MANUAL = "manual"
    LOSS_CAP = "loss_cap"  # lifting it needs an approval


@dataclass(frozen=True, slots=True)
class HoldState:
    reason: str
    by: str
    since: str
    kind: HoldKind = HoldKind.MANUAL


@dataclass(frozen=True, slots=True)
class HoldResult:
    changed: bool
    hold: HoldState | None


@dataclass(frozen=True, slots=True)
class StreamHealth:
    up: bool
    note: str  # why it is down ("" while up)
    since: datetime | None = None  # when it last went up or down (None: not started yet)
    streams: bool = True  # False: the venue has no streams (REST snapshots only, by design)


@dataclass(frozen=True, slots=True)
class VenueWeight:
    """An account's request weight as our budget counts it (ccxt cost units; Binance's weight)."""

    per_cycle: float  # what the last guard cycle (one snapshot) cost
    used: float  # spent in the venue's current rate window
    limit: float  # what the venue allows per window
    window_seconds: float


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """One account. Its guard fills in what it sees; the control layer adds its HOLD and
    whether the venue is a testnet (one type for both, with nothing copied field by field)."""

    name: str
    venue: str
    halted: str | None
    stream: StreamHealth
    amend_in_place: bool
    last_reconcile: datetime | None
    last_error: str | None
    positions: int
    unprotected: int
    last_time_to_protect: Decimal | None
    weight: VenueWeight | None = None  # venues without a request budget (sim) have none
    testnet: bool = False
    hold: HoldState | None = None

    @property
    def stream_up(self) -> bool:
        return self.stream.up

    @property
    def stream_note(self) -> str:
        return self.stream.note  # why it is down ("" while up)


@dataclass(frozen=True, slots=True)
class EngineStatus:
    mode: str  # paper | live
    started_at: datetime
    hold: HoldState | None
    accounts: tuple[AccountStatus, ...]
    chaos: str | None = None  # the active chaos profile's name (engine/chaos.py)

    @property
    def positions(self) -> int:
        return sum(a.positions for a in self.accounts)

    @property
    def unprotected(self) -> int:
        return sum(a.unprotected for a in self.accounts)


@dataclass(frozen=True, slots=True)
class PositionView:
    account: str
    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    stop_price: Decimal | None
    unprotected_seconds: float
    last_time_to_protect: Decimal | None
    generation: int | None = None  # which position this is (a re-entry gets a new one)
    whole_position_stop: bool = False  # the stop closes whatever is open (below the min size)
    source: str = "hand"  # who opened it: hand, telegram, webhook (engine/entries)
    exit: ExitView | None = None  # the exit plan and trail state, where plans are on


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    account: str
    positions: int
    unprotected_before: tuple[str, ...]
    unprotected_after: tuple[str, ...]
    events: tuple[ev.Event, ...]
    venue_calls: int
    error: str | None = None  # the account could not be reconciled (venue down, halted)


@dataclass(frozen=True, slots=True)
class CloseTarget:
    account: str
    symbol: str
    side: PositionSide
    qty: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    generation: int | None = None  # the position approved; a newer one is "changed"


class CloseStatus(StrEnum):
    CLOSED = "closed"  # flat now; its stops cancelled after flat
    SUBMITTED = "submitted"  # close sent; the venue has not shown it flat yet
    ALREADY_FLAT = "already_flat"
    IN_PROGRESS = "in_progress"  # an earlier close is still in flight
    CHANGED = "changed"  # not the position approved (flipped or re-opened; detail says how)
    HALTED = "halted"  # the account is on HALT: nothing was sent
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    account: str
    symbol: str
    status: CloseStatus
    qty: Decimal | None = None
    exit_price: Decimal | None = None
    realized_pnl: Decimal | None = None
    detail: str = ""
    entry_cut: bool = False  # a limit entry resting on the symbol was cancelled for this close


@dataclass(frozen=True, slots=True)
class OrderTarget:
    account: str
    symbol: str
    order_id: str
    kind: OrderKind
    side: OrderSide
    qty: Decimal | None
    price: Decimal | None


class CancelSkip(StrEnum):
    GONE = "gone"  # filled, cancelled or triggered meanwhile
    PROTECTS = "protects"  # it became the stop of a position: kept
    HALTED = "halted"  # the account is on HALT: nothing was sent


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    target: OrderTarget
    cancelled: bool
    detail: str = ""  # a CancelSkip, or the venue's words
