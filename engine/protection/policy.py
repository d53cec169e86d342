"""Where a stop should be. A trailing policy plugs in as another `StopPricer`."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from engine.domain.reports import MarketInfo, PositionReport
from engine.domain.values import (
    HUNDRED,
    PositionSide,
    ceil_to_step,
    conservative_stop,
    floor_to_step,
)


class CrossedPolicy(StrEnum):
    CLOSE = "close"  # reduce-only market close
    TIGHTEN = "tighten"  # stop at mark -/+ buffer


class StopPricer(Protocol):
    def desired_stop(self, position: PositionReport, last_stop: Decimal | None) -> Decimal:
        """The stop price this position should have now (before rounding on the tick)."""
        ...


class TakeProfitPricer(Protocol):
    def take_profit(self, symbol: str) -> Decimal | None:
        """The price of the position's own reduce-only take-profit (None: none)."""
        ...


@dataclass(frozen=True, slots=True)
class FixedDistancePricer:
    """Distance from entry in percent (per symbol or default), or the last stop we knew."""

    default_percent: Decimal
    per_symbol: dict[str, Decimal] = field(default_factory=dict)

    def desired_stop(self, position: PositionReport, last_stop: Decimal | None) -> Decimal:
        if last_stop is not None:
            return last_stop
        pct = self.per_symbol.get(position.symbol, self.default_percent) / HUNDRED
        return position.entry_price * (1 - pct * position.side.sign)


@dataclass(frozen=True, slots=True)
class ProtectionPolicy:
    pricer: StopPricer
    crossed: CrossedPolicy = CrossedPolicy.CLOSE
    tighten_buffer_percent: Decimal = Decimal("0.2")
    sla_seconds: float = 5.0
    zombie_grace_seconds: float = 30.0
    # REST snapshots may lag the stream: a position the stream reported open is not taken for
    # closed on a snapshot's silence alone until this long after the stream last saw it.
    snapshot_lag_seconds: float = 10.0
    # How long a sent close is trusted to be in flight (the venue may answer before it fills)
    # before the position may be closed again.
    close_pending_seconds: float = 15.0
    # The exit plans' take-profits (engine/exits); None: the supervisors place none.
    take_profits: TakeProfitPricer | None = None

    def is_crossed(self, side: PositionSide, stop: Decimal, mark: Decimal) -> bool:
        return stop >= mark if side is PositionSide.LONG else stop <= mark

    def tightened(self, side: PositionSide, mark: Decimal, market: MarketInfo) -> Decimal:
        """A stop just off the mark, on the tick, strictly on the safe side of it."""
        raw = mark * (1 - self.tighten_buffer_percent / HUNDRED * side.sign)
        price = conservative_stop(raw, side, market.tick)
        if self.is_crossed(side, price, mark):
            # The nearest tick strictly beyond the mark (the mark itself may be off the tick).
            if side is PositionSide.LONG:
                price = ceil_to_step(mark, market.tick) - market.tick
            else:
                price = floor_to_step(mark, market.tick) + market.tick
        return price
