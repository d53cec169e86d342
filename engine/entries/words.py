"""The words of an entry, shared by /long, /short and the webhook: SIZE is a quantity (0.01), a
notional ($500) or risk at the stop (r10 USDT, r1% of equity); a price is 63000 or 2%."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from engine.entries.model import Amount, PriceKind, PriceSpec, SizeKind


class BadNumber(ValueError):
    """Not a positive finite number; `text` is what was given."""

    def __init__(self, text: str) -> None:
        super().__init__(f"not a positive number: {text!r}")
        self.text = text


def number(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BadNumber(text) from None
    if not value.is_finite() or value <= 0:
        raise BadNumber(text)
    return value


def parse_size(text: str) -> Amount:
    word = text.strip().lower()
    if word.startswith("$"):
        return Amount(SizeKind.NOTIONAL, number(word[1:]))
    if word.startswith("r") and word.endswith("%"):
        return Amount(SizeKind.RISK_PERCENT, number(word[1:-1]))
    if word.startswith("r"):
        return Amount(SizeKind.RISK, number(word[1:]))
    return Amount(SizeKind.QTY, number(word))


def parse_price(text: str) -> PriceSpec:
    word = text.strip()
    if word.endswith("%"):
        return PriceSpec(PriceKind.PERCENT, number(word[:-1]))
    return PriceSpec(PriceKind.PRICE, number(word))
