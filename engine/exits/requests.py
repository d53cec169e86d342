"""What a person asks of a position's exits (/trail, /breakeven, /sl, /tp) and what came of it.
A price as typed (/sl, /tp) is the entries' `PriceSpec` (engine/entries/words.py reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from engine.exits.plan import ExitView


class PlanStatus(StrEnum):
    SET = "set"
    NO_POSITION = "no_position"


@dataclass(frozen=True, slots=True)
class PlanResult:
    account: str
    symbol: str
    status: PlanStatus
    view: ExitView | None = None


class MoveStatus(StrEnum):
    MOVED = "moved"
    NEEDS_CONFIRM = "needs_confirm"  # looser than the stop resting now
    THROUGH_MARK = "through_mark"  # would trigger at once: refused, nothing changed
    UNCHANGED = "unchanged"  # already there
    NO_POSITION = "no_position"
    NO_STOP = "no_stop"  # nothing rests to move (the guard is placing one)
    FAILED = "failed"  # the venue refused or did not answer; the old stop still rests


@dataclass(frozen=True, slots=True)
class MoveResult:
    account: str
    symbol: str
    status: MoveStatus
    old: Decimal | None = None
    new: Decimal | None = None
    mark: Decimal | None = None


class TakeProfitStatus(StrEnum):
    SET = "set"
    OFF = "off"
    THROUGH_MARK = "through_mark"  # at or past the mark (would fill at once): refused
    BAD_PRICE = "bad_price"  # a percent that puts it at zero or below: refused
    NO_POSITION = "no_position"


@dataclass(frozen=True, slots=True)
class TakeProfitResult:
    account: str
    symbol: str
    status: TakeProfitStatus
    price: Decimal | None = None
    mark: Decimal | None = None
