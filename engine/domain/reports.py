"""What a venue tells us, in our own types (ccxt dicts never get past engine/venues/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from engine.domain.values import OrderSide, PositionSide


@dataclass(frozen=True, slots=True)
class MarketInfo:
    symbol: str
    tick: Decimal
    lot: Decimal
    min_qty: Decimal
    min_notional: Decimal = Decimal(0)  # smallest qty * price an entry may have (0: none)


class OrderKind(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    MARKET = "market"
    LIMIT = "limit"
    OTHER_TRIGGER = "other_trigger"


class OrderStatus(StrEnum):
    OPEN = "open"
    FILLED = "filled"
    CANCELLED = "cancelled"
    TRIGGERED = "triggered"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class OrderReport:
    order_id: str
    client_id: str | None
    symbol: str
    kind: OrderKind
    side: OrderSide
    qty: Decimal | None  # None: closes the whole position (Binance closePosition, Bitget pos_loss)
    trigger_price: Decimal | None
    reduce_only: bool
    status: OrderStatus
    updated_at: datetime
    # Closes whatever is held when it fires (Binance closePosition, Bybit qty 0, Bitget
    # pos_loss): the form for positions below the minimum order size. It never needs resizing.
    whole_position: bool = False
    # When the venue created it (None where it does not say): a zombie's age counts from here.
    created_at: datetime | None = None
    price: Decimal | None = None  # a limit order's price (never a trigger)
    filled: Decimal | None = None  # how much of it has filled; None: not said (market: all)

    @property
    def filled_qty(self) -> Decimal:
        """What filled so far: a filled order without a figure filled whole."""
        if self.filled is not None:
            return self.filled
        return (self.qty or Decimal(0)) if self.status is OrderStatus.FILLED else Decimal(0)

    @property
    def is_resting(self) -> bool:
        return self.status is OrderStatus.OPEN

    def is_stop_for(self, side: PositionSide) -> bool:
        """A stop-loss that can only close this position: reduce-only, or a whole-position stop
        (no qty, or the venue's close-position form). A plain stop on the close side is a
        stop-and-reverse entry: once the position is gone it opens the other way, so it
        protects nothing (issue 15 finding 6)."""
        return (self.kind is OrderKind.STOP_LOSS and self.side is side.close_side
                and (self.reduce_only or self.qty is None or self.whole_position))

    def covers(self, qty: Decimal) -> bool:
        return self.whole_position or self.qty is None or self.qty == qty

    def is_take_profit_for(self, side: PositionSide) -> bool:
        """A resting reduce-only take-profit that can only reduce this position. It is never
        protection: it fires in the position's favour, and only at its price."""
        return (self.kind is OrderKind.TAKE_PROFIT and self.side is side.close_side
                and self.reduce_only and self.is_resting)


@dataclass(frozen=True, slots=True)
class PositionReport:
    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    opened_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Fill:
    order_id: str
    client_id: str | None
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    reduce_only: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class VenueSnapshot:
    """Everything protection needs, taken with a constant number of venue calls."""

    positions: tuple[PositionReport, ...]
    orders: tuple[OrderReport, ...]
    taken_at: datetime
    calls: int = 0
    weight: float = 0.0  # request weight it cost (venue units: Binance weight, ccxt's elsewhere)

    def position(self, symbol: str) -> PositionReport | None:
        return next((p for p in self.positions if p.symbol == symbol), None)



@dataclass(frozen=True, slots=True)
class StopRequest:
    symbol: str
    position_side: PositionSide
    qty: Decimal
    trigger_price: Decimal
    client_id: str
    # STOP_LOSS, or TAKE_PROFIT: a reduce-only order triggered on the mark in the position's
    # favour (the exit plan's take-profit; engine/exits).
    kind: OrderKind = OrderKind.STOP_LOSS


@dataclass(frozen=True, slots=True)
class MarketOrderRequest:
    symbol: str
    side: OrderSide
    qty: Decimal
    reduce_only: bool
    client_id: str
    # An entry's stop-loss, attached to the order where the venue can (capabilities.attached_stop)
    stop_loss: Decimal | None = None
    # A limit entry (GTC) at this price instead of a market order; entries only.
    limit_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class VenueCapabilities:
    amend_stop_in_place: bool
    streams: bool
    hedge_mode: bool = False
    # A stop-loss can ride on the entry order (Bybit stopLoss, Bitget preset stop-loss): the
    # position is never without one, even for the first fill.
    attached_stop: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


# Stream events: what a venue's websocket says happened.
@dataclass(frozen=True, slots=True)
class PositionUpdate:
    position: PositionReport | None  # None: flat
    symbol: str


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    order: OrderReport


@dataclass(frozen=True, slots=True)
class FillUpdate:
    fill: Fill


@dataclass(frozen=True, slots=True)
class StreamStatus:
    up: bool
    reason: str = ""


VenueEvent = PositionUpdate | OrderUpdate | FillUpdate | StreamStatus


@dataclass(frozen=True, slots=True)
class PriceTick:
    """A mark price from the venue's market-data stream (or a snapshot, as the fallback)."""

    symbol: str
    mark: Decimal
    at: datetime
