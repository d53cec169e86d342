"""Turn a request into exactly what will be sent: size and stop on the venue's lot and tick.
Pure: the caller brings the market, the mark and (for risk in percent) the equity."""

from __future__ import annotations

from decimal import Decimal

from engine.domain.reports import MarketInfo
from engine.domain.values import (
    HUNDRED,
    PositionSide,
    conservative_stop,
    floor_to_step,
    round_to_step,
    take_profit_on_tick,
)
from engine.entries.model import (
    Amount,
    EntryPlan,
    EntryRefused,
    PriceKind,
    PriceSpec,
    Refusal,
    SizeKind,
)


def stop_price(spec: PriceSpec, side: PositionSide, mark: Decimal, market: MarketInfo
               ) -> Decimal:
    """A percent is a distance from the mark on the losing side; rounding never loosens it."""
    if spec.value <= 0:
        raise EntryRefused(Refusal.BAD_REQUEST, f"stop {spec.value} must be positive")
    if spec.kind is PriceKind.PRICE:
        return conservative_stop(spec.value, side, market.tick)
    if spec.value >= HUNDRED:
        raise EntryRefused(Refusal.STOP_TOO_FAR, f"stop {spec.value}% must be below 100%")
    return conservative_stop(mark * (1 - spec.value / HUNDRED * side.sign), side, market.tick)


def take_profit_price(spec: PriceSpec | None, side: PositionSide, mark: Decimal,
                      market: MarketInfo) -> Decimal | None:
    if spec is None:
        return None
    if spec.value <= 0:
        raise EntryRefused(Refusal.BAD_REQUEST, f"take-profit {spec.value} must be positive")
    raw = spec.value if spec.kind is PriceKind.PRICE else (
        mark * (1 + spec.value / HUNDRED * side.sign))
    return take_profit_on_tick(raw, side, market.tick)


def quantity(size: Amount, mark: Decimal, stop: Decimal, market: MarketInfo,
             equity: Decimal | None) -> Decimal:
    """Base quantity, floored on the lot (never more than asked)."""
    if size.value <= 0:
        raise EntryRefused(Refusal.BAD_REQUEST, f"size {size.value} must be positive")
    distance = abs(mark - stop)
    match size.kind:
        case SizeKind.QTY:
            raw = size.value
        case SizeKind.NOTIONAL:
            raw = size.value / mark
        case SizeKind.RISK:
            raw = size.value / distance
        case SizeKind.RISK_PERCENT:
            if equity is None or equity <= 0:
                raise EntryRefused(Refusal.BAD_REQUEST, "equity unknown: size by qty or $")
            raw = equity * size.value / HUNDRED / distance
    return floor_to_step(raw, market.lot)


def plan_entry(*, account: str, symbol: str, side: PositionSide, size: Amount, stop: PriceSpec,
               take_profit: PriceSpec | None, market: MarketInfo, mark: Decimal,
               equity: Decimal | None, fee_rate: Decimal, attached: bool,
               limit_price: Decimal | None = None, limit_timeout: float = 0.0) -> EntryPlan:
    """A limit entry is sized and stopped from its limit price (where it fills), a market one
    from the mark."""
    limit = None
    if limit_price is not None:
        if limit_price <= 0:
            raise EntryRefused(Refusal.BAD_REQUEST, f"limit price {limit_price} must be positive")
        limit = round_to_step(limit_price, market.tick)
    at = limit if limit is not None else mark
    stop_at = stop_price(stop, side, at, market)
    if (stop_at - at) * side.sign >= 0:
        raise EntryRefused(Refusal.STOP_WRONG_SIDE,
                           f"stop {stop_at} must be {'below' if side.sign > 0 else 'above'} "
                           f"the {'limit' if limit is not None else 'mark'} {at}")
    tp = take_profit_price(take_profit, side, at, market)
    if tp is not None and (tp - at) * side.sign <= 0:
        raise EntryRefused(Refusal.TAKE_PROFIT_WRONG_SIDE,
                           f"take-profit {tp} must be {'above' if side.sign > 0 else 'below'} "
                           f"the {'limit' if limit is not None else 'mark'} {at}")
    qty = quantity(size, at, stop_at, market, equity)
    notional = qty * at
    if qty < market.min_qty or notional < market.min_notional:
        raise EntryRefused(Refusal.BELOW_MIN,
                           f"{qty} ({notional:.2f}) is below the venue's minimum "
                           f"{market.min_qty} / {market.min_notional}")
    exit_notional = qty * stop_at
    return EntryPlan(
        account=account, symbol=symbol, side=side, qty=qty, mark=mark, stop_price=stop_at,
        take_profit=tp, notional=notional,
        risk=abs(at - stop_at) * qty,
        fee_estimate=((notional + exit_notional) * fee_rate).quantize(Decimal("0.01")),
        attached=attached, limit_price=limit,
        limit_timeout=limit_timeout if limit is not None else 0.0)
