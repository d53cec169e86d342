"""What a person asks of a position's exits (/trail, /breakeven, /sl) and what came of it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from engine.domain.values import PositionSide
from engine.exits.plan import HUNDRED, ExitView


@dataclass(frozen=True, slots=True)
class StopSpec:
    """A stop price as typed: an absolute price, or a distance in % from the mark."""

    price: Decimal | None = None
    percent: Decimal | None = None

    def __post_init__(self) -> None:
        if (self.price is None) == (self.percent is None):
            raise ValueError("a price or a percent, not both")
        if self.price is not None and self.price <= 0:
            raise ValueError("the price must be above 0")
        if self.percent is not None and not Decimal(0) < self.percent < HUNDRED:
            raise ValueError("the percent must be between 0 and 100")

    def stop_for(self, side: PositionSide, mark: Decimal) -> Decimal:
        if self.price is not None:
            return self.price
        assert self.percent is not None
        return mark * (1 - self.percent / HUNDRED * side.sign)


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
