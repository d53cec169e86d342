"""ccxt dicts -> our reports. Numbers go through str into Decimal; times become UTC-aware."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from engine.domain.reports import OrderKind, OrderReport, PositionReport
from engine.domain.values import PositionSide, to_decimal

if TYPE_CHECKING:
    from engine.venues.dialects.base import Dialect

Raw = dict[str, Any]
_PLAIN_KINDS = frozenset({OrderKind.LIMIT, OrderKind.MARKET})


def dec(value: object) -> Decimal | None:
    """Decimal of a ccxt number or string; None for missing, empty, NaN or garbage."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        result = to_decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def positive(value: object) -> Decimal | None:
    """Like dec, but zero and negatives (venues' "not set") become None."""
    result = dec(value)
    return result if result is not None and result > 0 else None


def fmt(value: Decimal) -> str:
    """Plain decimal string for a request ("0.001", "65000.5"): no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def utc_from_ms(value: object) -> datetime | None:
    try:
        ms = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    if ms <= 0:
        return None
    return datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=(ms % 1000) * 1000)


def info(raw: Raw) -> Raw:
    value = raw.get("info")
    return value if isinstance(value, dict) else {}


def order_report(raw: Raw, dialect: Dialect, now: datetime) -> OrderReport | None:
    """Our view of a ccxt order; None when it cannot be attributed (no id, symbol or side)."""
    order_id, symbol = raw.get("id"), raw.get("symbol")
    if not order_id or not symbol:
        return None
    kind = dialect.order_kind(raw)
    side = dialect.order_side(raw, kind)
    if side is None:
        return None
    qty = dialect.order_qty(raw, kind)
    updated = utc_from_ms(raw.get("lastUpdateTimestamp")) or utc_from_ms(raw.get("timestamp"))
    return OrderReport(
        order_id=str(order_id),
        client_id=raw.get("clientOrderId") or None,
        symbol=str(symbol),
        kind=kind,
        side=side,
        qty=qty,
        # A limit's price is not a trigger; ccxt reads the TP/SL attached to an entry (Bitget
        # presetStopLossPrice, Bybit stopLoss) as stopLossPrice/takeProfitPrice: not ours either.
        trigger_price=None if kind in _PLAIN_KINDS else dialect.order_trigger(raw),
        reduce_only=dialect.order_reduce_only(raw, kind),
        status=dialect.order_status(raw, kind),
        updated_at=updated or now,
        whole_position=qty is None and kind in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT),
        created_at=utc_from_ms(raw.get("timestamp")),
        price=positive(raw.get("price")) if kind is OrderKind.LIMIT else None,
        filled=dec(raw.get("filled")),
    )


def position_report(raw: Raw, dialect: Dialect, now: datetime) -> PositionReport | None:
    """Our view of a ccxt position; None when flat."""
    contracts = dec(raw.get("contracts"))
    symbol = raw.get("symbol")
    if not contracts or not symbol:
        return None
    side = dialect.position_side(raw)
    if side is None:  # ccxt could not tell: a signed size is the last resort
        side = PositionSide.SHORT if contracts < 0 else PositionSide.LONG
    size = dec(raw.get("contractSize")) or Decimal(1)
    entry = dec(raw.get("entryPrice")) or Decimal(0)
    return PositionReport(
        symbol=str(symbol),
        side=side,
        qty=abs(contracts) * size,
        entry_price=entry,
        # Positions carry the mark on every venue we support; a stream update may omit it.
        mark_price=positive(raw.get("markPrice")) or entry,
        unrealized_pnl=dec(raw.get("unrealizedPnl")) or Decimal(0),
        opened_at=None,
        updated_at=utc_from_ms(raw.get("lastUpdateTimestamp"))
        or utc_from_ms(raw.get("timestamp")) or now,
    )
