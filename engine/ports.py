"""The Venue port: what the engine needs from an exchange. Implemented by engine/sim (paper mode,
tests) and engine/venues (ccxt). Every method raises only engine.errors types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from engine.domain.ledger import LedgerEntry
from engine.domain.position import GuardedPosition
from engine.domain.reports import (
    MarketInfo,
    MarketOrderRequest,
    OrderReport,
    PriceTick,
    StopRequest,
    VenueCapabilities,
    VenueEvent,
    VenueSnapshot,
)

if TYPE_CHECKING:
    from engine.results import VenueWeight


@runtime_checkable
class Venue(Protocol):
    name: str  # e.g. "sim", "binanceusdm"

    @property
    def capabilities(self) -> VenueCapabilities: ...

    async def start(self) -> None:
        """Load markets and check the account can be read; raises OperatorError if not."""

    async def close(self) -> None: ...

    def market(self, symbol: str) -> MarketInfo:
        """Tick and lot of a loaded market; raises Rejected(BAD_SYMBOL) for an unknown one."""
        ...

    def resolve_symbol(self, text: str) -> str:
        """`BTCUSDT`, `BTC/USDT`, `BTC/USDT:USDT` -> the venue's perpetual symbol."""
        ...

    # --- snapshots: a constant number of calls, whatever the number of positions -------------
    async def snapshot(self) -> VenueSnapshot: ...

    async def fetch_open_orders(self) -> list[OrderReport]:
        """Every resting NON-trigger order of the account (limit entries, plain reduce-only limit
        take-profits), all symbols, in one call where the venue allows it. Trigger orders (stops,
        TP/SL, conditional entries) are not here: snapshot() lists those."""
        ...

    async def fetch_ledger(self, since: datetime) -> list[LedgerEntry]:
        """Realized PnL, fees and funding since a time, oldest first (one or a few calls)."""
        ...

    async def find_order(self, symbol: str, client_id: str) -> OrderReport | None:
        """Look an order up by our client id (open or recently closed)."""
        ...

    # --- commands ------------------------------------------------------------------------
    async def place_stop(self, request: StopRequest) -> OrderReport: ...

    async def amend_stop(self, order: OrderReport, trigger_price: Decimal,
                         qty: Decimal) -> OrderReport:
        """Only when capabilities.amend_stop_in_place; the order keeps its id."""
        ...

    async def cancel_order(self, order: OrderReport) -> None:
        """Cancel a resting order; an order already gone raises Rejected(ORDER_NOT_FOUND)."""

    async def market_order(self, request: MarketOrderRequest) -> OrderReport: ...

    # --- stream --------------------------------------------------------------------------
    def events(self) -> AsyncIterator[VenueEvent]:
        """Position/order/fill updates as they happen; ends when the venue closes."""
        ...

    def price_ticks(self, symbols: frozenset[str]) -> AsyncIterator[tuple[PriceTick, ...]]:
        """Mark prices of `symbols` as they change, in batches, over one subscription where the
        venue allows it. Ends at once where the venue has no such stream (the snapshots' marks
        are the fallback), and when the venue closes. Raises only engine.errors types."""
        ...


@runtime_checkable
class WeighsRequests(Protocol):
    """A venue that budgets its request weight (the ccxt ones; the simulator has no limit)."""

    def request_weight(self) -> VenueWeight: ...


@runtime_checkable
class Quotes(Protocol):
    """What an entry needs to size itself: the mark and the account's equity (quote units)."""

    async def mark_price(self, symbol: str) -> Decimal: ...

    async def equity(self) -> Decimal: ...


class PositionStore(Protocol):
    """Where guarded positions persist (SQLite now; PostgreSQL with leases later)."""

    async def save(self, position: GuardedPosition) -> None: ...

    async def delete(self, account: str, symbol: str) -> None: ...

    async def load(self, account: str) -> list[GuardedPosition]: ...


class StateStore(Protocol):
    async def get(self, scope: str, key: str, default: Any = None) -> Any: ...

    async def put(self, scope: str, key: str, value: Any) -> None: ...

    async def incr(self, scope: str, key: str) -> int: ...
