"""What every venue shares; a dialect subclass overrides only what its exchange does differently.

Dialects speak ccxt: they build params, read raw ccxt dicts, and make the venue-specific calls
through a `Rest` gate (so calls are counted and errors translated). Nothing here leaves
engine/venues/."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal

from engine.domain.ledger import LedgerEntry
from engine.domain.reports import (
    MarketOrderRequest,
    OrderKind,
    OrderReport,
    OrderStatus,
    StopRequest,
    VenueCapabilities,
)
from engine.domain.values import OrderSide, PositionSide
from engine.errors import Rejected, RejectReason
from engine.venues.budget import BudgetLimits
from engine.venues.convert import dec, positive
from engine.venues.errors import VenueCodes
from engine.venues.rest import Raw, Rest
from engine.venues.turns import in_turns

TRIGGER_KINDS = frozenset({OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT, OrderKind.OTHER_TRIGGER})

_UNIFIED_STATUS: dict[str, OrderStatus] = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "canceling": OrderStatus.OPEN,
    "expired": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
}


@dataclass(frozen=True, slots=True)
class Subscription:
    """One websocket subscription: `channel` picks the ccxt watch method, `params` go with it."""

    name: str
    channel: Literal["positions", "orders"]
    params: dict[str, Any] = field(default_factory=dict)


class Dialect:
    name: ClassVar[str]  # our venue name: "binance", "bybit", "bitget"
    ccxt_id: ClassVar[str]  # ccxt exchange id: "binanceusdm", ...
    settle: ClassVar[str] = "USDT"
    capabilities: ClassVar[VenueCapabilities]
    codes: ClassVar[VenueCodes] = VenueCodes()
    budget: ClassVar[BudgetLimits]  # the venue's documented request-weight limit
    needs_password: ClassVar[bool] = False
    whole_position_amount: ClassVar[str | None] = None  # create_order amount of that form

    # --- setup ---------------------------------------------------------------------------
    def configure(self, exchange: Any, *, testnet: bool) -> None:
        """Options that keep ccxt on linear USDT perpetuals; testnet switch."""
        exchange.options["defaultType"] = "swap"
        exchange.options["defaultSubType"] = "linear"
        # Currencies are a wallet concern (and a private call on some venues): not loaded.
        exchange.has["fetchCurrencies"] = False
        if testnet:
            exchange.set_sandbox_mode(True)

    async def prepare(self, rest: Rest) -> None:
        """After load_markets: warm what ccxt would otherwise fetch lazily inside a snapshot."""

    async def is_hedged(self, rest: Rest) -> bool:
        """True when the account is in hedge (two-way) mode; also proves the keys can read."""
        return any(p.get("hedged") is True for p in await self.list_positions(rest))

    # --- reading -------------------------------------------------------------------------
    # Listings go to ccxt's implicit endpoint with the request its unified method would send,
    # and ccxt's own parse_* read the rows in turns of the loop (`ccxt_positions`,
    # `ccxt_orders`): the unified methods parse a whole answer in one piece.
    async def list_positions(self, rest: Rest) -> list[Raw]:
        """Open positions of every symbol, as ccxt's fetch_positions gives them."""
        raise NotImplementedError

    async def list_stops(self, rest: Rest, symbol: str | None) -> list[Raw]:
        """Resting trigger orders, all symbols when `symbol` is None, as ccxt's
        fetch_open_orders gives them."""
        raise NotImplementedError

    async def list_orders(self, rest: Rest) -> list[Raw]:
        """Resting non-trigger orders (limit entries, plain reduce-only limit take-profits) of
        every symbol (the venue may mix in trigger orders: the caller drops them by kind)."""
        raise NotImplementedError

    async def find_closed(self, rest: Rest, symbol: str, client_id: str) -> Raw | None:
        """An order that is no longer resting, by our client id; None where it cannot be found."""
        return None

    async def fetch_ledger(self, rest: Rest, since_ms: int, until_ms: int) -> list[LedgerEntry]:
        """Realized PnL, fees and funding in [since_ms, until_ms], every symbol, in as few calls
        as the venue allows (engine/venues/ledger.py says why not ccxt's unified fetch_ledger).
        Entries may repeat across pages; the venue drops repeats by ref."""
        raise Rejected(RejectReason.OTHER, f"{self.name}: no ledger (income history) support")

    def observe_position(self, raw: Raw) -> None:
        """Hook: dialects that need per-symbol facts (Bitget margin mode) remember them here."""

    def observe_order(self, raw: Raw) -> None:
        """Hook: dialects that need per-order facts (Bitget planType) remember them here."""

    # --- commands ------------------------------------------------------------------------
    async def place_stop(self, rest: Rest, request: StopRequest, trigger: str,
                         qty: str | None) -> Raw:
        """A sized stop, or (qty None) one that closes the whole position when it fires."""
        if request.kind is OrderKind.TAKE_PROFIT:
            params, amount = self.take_profit_params(request, trigger), qty
        elif qty is None:
            params = self.whole_position_stop_params(request, trigger)
            amount = self.whole_position_amount
        else:
            params, amount = self.stop_params(request, trigger), qty
        return await rest("create_order(stop)", rest.exchange.create_order(
            request.symbol, "market", request.position_side.close_side.value, amount, None,
            params))

    def stop_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        raise NotImplementedError

    def whole_position_stop_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        raise NotImplementedError

    def take_profit_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        """A sized reduce-only take-profit triggered on the mark price, closing at market."""
        raise NotImplementedError

    def cancel_params(self, order: OrderReport) -> dict[str, Any]:
        return {"trigger": True} if order.kind in TRIGGER_KINDS else {}

    def check_cancelled(self, raw: Raw, order: OrderReport) -> None:
        """Raise when the venue answered the cancel without cancelling."""

    async def amend_stop(self, rest: Rest, order: OrderReport, trigger: str,
                         qty: str | None) -> Raw:
        """`qty` None: a whole-position stop, whose size is not ours to send."""
        raise Rejected(RejectReason.OTHER,
                       f"{self.name} cannot amend a stop in place: place the new one, then cancel")

    def market_order_params(self, request: MarketOrderRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"reduceOnly": request.reduce_only,
                                  "clientOrderId": request.client_id}
        if request.stop_loss is not None:
            params.update(self.attached_stop_params(request.stop_loss))
        return params

    def equity(self, balance: Raw) -> Decimal | None:
        """USDT equity (wallet + unrealized) from ccxt's fetch_balance; ccxt's `total` is that
        on Binance (marginBalance) and Bitget (accountEquity)."""
        return dec((balance.get("total") or {}).get("USDT"))

    def attached_stop_params(self, stop_loss: Decimal) -> dict[str, Any]:
        """A stop-loss riding on an entry order (capabilities.attached_stop)."""
        raise Rejected(RejectReason.INVALID_ORDER,
                       f"{self.name} cannot attach a stop-loss to an entry: place it at the fill")

    # --- streams -------------------------------------------------------------------------
    def subscriptions(self) -> tuple[Subscription, ...]:
        return (Subscription("positions", "positions"), Subscription("orders", "orders"))

    # --- raw fields ------------------------------------------------------------------------
    def position_side(self, raw: Raw) -> PositionSide | None:
        side = raw.get("side")
        return PositionSide(side) if side in ("long", "short") else None

    def order_kind(self, raw: Raw) -> OrderKind:
        if positive(raw.get("stopLossPrice")) is not None:
            return OrderKind.STOP_LOSS
        if positive(raw.get("takeProfitPrice")) is not None:
            return OrderKind.TAKE_PROFIT
        if positive(raw.get("triggerPrice")) is not None:
            return OrderKind.OTHER_TRIGGER
        return OrderKind.LIMIT if raw.get("type") == "limit" else OrderKind.MARKET

    def order_side(self, raw: Raw, kind: OrderKind) -> OrderSide | None:
        side = raw.get("side")
        return OrderSide(side) if side in ("buy", "sell") else None

    def order_qty(self, raw: Raw, kind: OrderKind) -> Decimal | None:
        qty = positive(raw.get("amount"))
        if qty is None and kind in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT):
            return None  # a whole-position stop
        return qty if qty is not None else dec(raw.get("amount"))

    def order_trigger(self, raw: Raw) -> Decimal | None:
        for key in ("triggerPrice", "stopLossPrice", "takeProfitPrice"):
            price = positive(raw.get(key))
            if price is not None:
                return price
        return None

    def order_reduce_only(self, raw: Raw, kind: OrderKind) -> bool:
        return raw.get("reduceOnly") is True

    def order_status(self, raw: Raw, kind: OrderKind) -> OrderStatus:
        status = _UNIFIED_STATUS.get(str(raw.get("status")), OrderStatus.OPEN)
        if status is OrderStatus.FILLED and kind in TRIGGER_KINDS:
            return OrderStatus.TRIGGERED
        return status


def flag(raw_info: Raw, *keys: str) -> bool:
    """A venue boolean that may arrive as bool or as "true"/"false" text."""
    for key in keys:
        value = raw_info.get(key)
        if isinstance(value, bool):
            if value:
                return True
        elif isinstance(value, str) and value.lower() in ("true", "yes", "1"):
            return True
    return False


async def ccxt_positions(rows: list[Raw], parse: Callable[[Raw], Raw]) -> list[Raw]:
    """ccxt's `parse` (its parse_position, or the venue's variant) over a listing's raw rows,
    in turns of the loop."""
    return await in_turns(rows, lambda chunk: [parse(row) for row in chunk])


async def ccxt_orders(exchange: Any, rows: list[Raw], market: Raw | None = None) -> list[Raw]:
    """ccxt's parse_orders over a listing's raw rows, in turns of the loop; in ccxt's order
    (oldest first), as its fetch_open_orders returns them."""
    parsed = await in_turns(rows, lambda chunk: exchange.parse_orders(chunk, market))
    return exchange.sort_by(parsed, "timestamp")
