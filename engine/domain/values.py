"""Money, sides and symbols. Money is Decimal end to end; stops round toward the mark."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import StrEnum

ZERO = Decimal(0)
HUNDRED = Decimal(100)  # percent arithmetic: one constant for every module


def to_decimal(value: object) -> Decimal:
    """Decimal from str/int/Decimal; floats go through str so 0.1 stays 0.1."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


class PositionSide(StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def close_side(self) -> OrderSide:
        return OrderSide.SELL if self is PositionSide.LONG else OrderSide.BUY

    @property
    def entry_side(self) -> OrderSide:
        return OrderSide.BUY if self is PositionSide.LONG else OrderSide.SELL

    @property
    def sign(self) -> int:
        return 1 if self is PositionSide.LONG else -1


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


def round_to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_HALF_UP) * step


def conservative_stop(price: Decimal, side: PositionSide, tick: Decimal) -> Decimal:
    """Round a stop price on the tick, toward the mark: never a looser stop than asked.

    A long's stop sits below the market, so it rounds up (closer, tighter); a short's rounds down.
    """
    if side is PositionSide.LONG:
        return ceil_to_step(price, tick)
    return floor_to_step(price, tick)


_SYMBOL_RE = re.compile(r"^([A-Z0-9]+?)[/\-_]?(USDT|USDC|USD)(?::(USDT|USDC|USD))?$")


@dataclass(frozen=True, slots=True)
class Symbol:
    """A linear perpetual, e.g. BTC/USDT:USDT. `BTCUSDT`, `BTC/USDT` and `btc-usdt` all parse."""

    base: str
    quote: str

    @property
    def settle(self) -> str:
        return self.quote

    def __str__(self) -> str:
        return f"{self.base}/{self.quote}:{self.settle}"

    @property
    def compact(self) -> str:
        return f"{self.base}{self.quote}"

    @classmethod
    def parse(cls, text: str) -> Symbol:
        match = _SYMBOL_RE.match(text.strip().upper())
        if not match or not match.group(1):
            raise ValueError(f"not a linear perpetual symbol: {text!r}")
        base, quote, settle = match.groups()
        if settle and settle != quote:
            raise ValueError(f"settle currency {settle} differs from quote {quote}: {text!r}")
        return cls(base, quote)


def take_profit_on_tick(price: Decimal, side: PositionSide, tick: Decimal) -> Decimal:
    """A take-profit on the tick, never nearer the mark than asked (up for a long, down for a
    short): it never closes for less than the price set."""
    return ceil_to_step(price, tick) if side is PositionSide.LONG else floor_to_step(price, tick)
