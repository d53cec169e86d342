"""The typed values of an entry: what was asked, what will be sent, what came of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from engine.domain.values import PositionSide


class SizeKind(StrEnum):
    QTY = "qty"  # base units (0.01 BTC)
    NOTIONAL = "notional"  # quote units at the mark ($500)
    RISK = "risk"  # quote lost if the stop fills (r10: 10 USDT)
    RISK_PERCENT = "risk_percent"  # percent of equity lost at the stop (r1%)


class PriceKind(StrEnum):
    PRICE = "price"
    PERCENT = "percent"  # distance from the mark


class EntrySource(StrEnum):
    HAND = "hand"  # opened outside Vigil
    TELEGRAM = "telegram"
    WEBHOOK = "webhook"
    API = "api"


class EntryStatus(StrEnum):
    PROTECTED = "protected"  # filled, and its stop rests
    ROLLED_BACK = "rolled_back"  # the stop could not rest: closed, verified flat
    ROLLBACK_FAILED = "rollback_failed"  # close failed too: account halted, alert loud
    NOT_FILLED = "not_filled"  # nothing filled (rejected or unknown, never sent twice)
    CLOSED = "closed"  # filled, then flat (closed meanwhile) before it could be protected
    REFUSED = "refused"  # a risk gate said no: nothing was sent
    PENDING = "pending"  # journaled, still in progress (a restart resumes it)


class Refusal(StrEnum):
    """Why a risk gate refused an entry; each has its own localized message in the bot."""

    HOLD = "hold"
    HALT = "halt"
    DAILY_LOSS = "daily_loss"
    MAX_POSITIONS = "max_positions"
    POSITION_NOTIONAL = "position_notional"
    ACCOUNT_NOTIONAL = "account_notional"
    LEVERAGE = "leverage"
    BELOW_MIN = "below_min"  # size below the venue's minimum qty / notional after rounding
    STOP_WRONG_SIDE = "stop_wrong_side"
    TAKE_PROFIT_WRONG_SIDE = "take_profit_wrong_side"  # at or past the entry price: fills at once
    STOP_TOO_CLOSE = "stop_too_close"
    STOP_TOO_FAR = "stop_too_far"
    COOL_DOWN = "cool_down"
    POSITION_OPEN = "position_open"  # same side already open: adding to it is not supported
    OPPOSITE_POSITION = "opposite_position"  # open the other way: an entry would close or flip it
    DUPLICATE = "duplicate"  # same key, different request
    BAD_REQUEST = "bad_request"  # unknown account / symbol, no stop, size not positive


class EntryRefused(Exception):
    def __init__(self, reason: Refusal, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Amount:
    kind: SizeKind
    value: Decimal


@dataclass(frozen=True, slots=True)
class PriceSpec:
    kind: PriceKind
    value: Decimal


@dataclass(frozen=True, slots=True)
class EntryRequest:
    account: str
    symbol: str  # as typed (BTCUSDT, BTC/USDT:USDT)
    side: PositionSide
    size: Amount
    stop: PriceSpec
    key: str  # idempotency key: the same key never sends a second entry
    source: EntrySource
    take_profit: PriceSpec | None = None
    by: str = ""
    limit_price: Decimal | None = None  # a limit entry at this price; None: market


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """Exactly what will be sent: rounded on the venue's lot and tick, priced at `mark`."""

    account: str
    symbol: str  # the venue's symbol
    side: PositionSide
    qty: Decimal
    mark: Decimal
    stop_price: Decimal
    take_profit: Decimal | None
    notional: Decimal
    risk: Decimal  # quote lost if the stop fills at its price
    fee_estimate: Decimal  # taker fee in and out
    attached: bool  # the stop rides on the entry order
    limit_price: Decimal | None = None  # on the tick; sizing and the stop start from it
    limit_timeout: float = 0.0  # seconds the limit rests before its unfilled rest is cancelled

    @property
    def price(self) -> Decimal:
        """The price the entry is expected at: its limit, else the mark."""
        return self.limit_price if self.limit_price is not None else self.mark


@dataclass(frozen=True, slots=True)
class EntryResult:
    status: EntryStatus
    key: str
    plan: EntryPlan | None = None
    filled_qty: Decimal = Decimal(0)
    entry_price: Decimal | None = None
    stop_order_id: str | None = None
    time_to_protect: Decimal | None = None
    refusal: Refusal | None = None
    detail: str = ""
    pnl: Decimal | None = None  # the rollback's round trip
    replayed: bool = False  # an earlier result, returned for a repeated key
    notes: tuple[str, ...] = field(default_factory=tuple)


def request_to_json(request: EntryRequest) -> dict[str, str | None]:
    """JSON-safe (an approval stores it until the Confirm): Decimals as text."""
    tp = request.take_profit
    return {"account": request.account, "symbol": request.symbol, "side": request.side.value,
            "size_kind": request.size.kind.value, "size": str(request.size.value),
            "stop_kind": request.stop.kind.value, "stop": str(request.stop.value),
            "tp_kind": tp.kind.value if tp else None, "tp": str(tp.value) if tp else None,
            "key": request.key, "source": request.source.value, "by": request.by,
            "limit": str(request.limit_price) if request.limit_price is not None else None}


def request_from_json(raw: dict[str, str | None]) -> EntryRequest:
    def need(name: str) -> str:
        value = raw[name]
        assert value is not None, name
        return value
    tp = (PriceSpec(PriceKind(need("tp_kind")), Decimal(need("tp")))
          if raw.get("tp") is not None else None)
    return EntryRequest(
        account=need("account"), symbol=need("symbol"), side=PositionSide(need("side")),
        size=Amount(SizeKind(need("size_kind")), Decimal(need("size"))),
        stop=PriceSpec(PriceKind(need("stop_kind")), Decimal(need("stop"))),
        key=need("key"), source=EntrySource(need("source")), take_profit=tp,
        by=raw.get("by") or "",
        limit_price=Decimal(limit) if (limit := raw.get("limit")) is not None else None)
