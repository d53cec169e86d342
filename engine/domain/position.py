"""A guarded position: its lifecycle (explicit transition table) and its protection state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from engine.domain.values import PositionSide


class PositionState(StrEnum):
    UNPROTECTED = "unprotected"  # open on the venue, no stop of ours resting
    PROTECTED = "protected"  # exactly one stop, sized to the position
    CLOSING = "closing"  # a reduce-only close is in flight; the stop stays until flat
    CLOSED = "closed"


TRANSITIONS: dict[PositionState, frozenset[PositionState]] = {
    PositionState.UNPROTECTED: frozenset(
        {PositionState.PROTECTED, PositionState.CLOSING, PositionState.CLOSED}),
    PositionState.PROTECTED: frozenset(
        {PositionState.UNPROTECTED, PositionState.CLOSING, PositionState.CLOSED}),
    PositionState.CLOSING: frozenset(
        {PositionState.CLOSED, PositionState.PROTECTED, PositionState.UNPROTECTED}),
    PositionState.CLOSED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class StopRef:
    order_id: str
    client_id: str | None
    trigger_price: Decimal
    qty: Decimal | None


@dataclass(slots=True)
class GuardedPosition:
    """What the journal knows about one position; owned and mutated by its supervisor only."""

    account: str
    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    generation: int
    state: PositionState = PositionState.UNPROTECTED
    stop: StopRef | None = None
    stop_seq: int = 0  # bumps once an id is used up (placed or definitively rejected)
    close_seq: int = 0
    opened_at: datetime | None = None
    unprotected_since: datetime | None = None
    sla_alerted: bool = False
    last_mark: Decimal | None = None
    last_time_to_protect: Decimal | None = None
    # A reduce-only close is in flight until then: no second close, and no stop racing it
    # until its fill is seen (the position's size no longer `close_from_qty`).
    close_pending_until: datetime | None = None
    close_from_qty: Decimal | None = None
    # The close in flight is known to have filled: whatever the view still shows (the rest, or
    # a REST view that lags the fill) gets a stop at once; only a second close stays blocked.
    close_filled: bool = False
    # The stream showed our stop fire and then the symbol flat: this position is closed,
    # whatever is open on the symbol now (a re-entry is a new position with its own stop,
    # never the old, crossed, one).
    stop_fired: bool = False
    flat_after_stop: bool = False

    def move_to(self, new: PositionState) -> None:
        if new is self.state:
            return
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.symbol}: {self.state} -> {new}")
        self.state = new
