"""`/long SYMBOL SIZE [sl PRICE|PCT%] [tp PRICE|PCT%]`: the words, read into typed values.
SIZE is a quantity (0.01), a notional ($500), or risk at the stop (r10 USDT, r1% of equity)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from aiogram.utils.i18n import gettext as _

from engine.entries.model import Amount, PriceKind, PriceSpec, SizeKind


class EntryArgsError(ValueError):
    """A specific, translated reason the words are not an entry."""


@dataclass(frozen=True, slots=True)
class EntryArgs:
    symbol: str
    size: Amount
    stop: PriceSpec | None
    take_profit: PriceSpec | None


def _number(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise EntryArgsError(_("{what} must be a positive number, not {text}").format(
            what=what, text=text))
    return value


def parse_size(text: str) -> Amount:
    word = text.lower()
    if word.startswith("$"):
        return Amount(SizeKind.NOTIONAL, _number(word[1:], _("size")))
    if word.startswith("r") and word.endswith("%"):
        return Amount(SizeKind.RISK_PERCENT, _number(word[1:-1], _("risk")))
    if word.startswith("r"):
        return Amount(SizeKind.RISK, _number(word[1:], _("risk")))
    return Amount(SizeKind.QTY, _number(word, _("size")))


def parse_price(text: str, what: str) -> PriceSpec:
    if text.endswith("%"):
        return PriceSpec(PriceKind.PERCENT, _number(text[:-1], what))
    return PriceSpec(PriceKind.PRICE, _number(text, what))


def parse_entry(args: str | None) -> EntryArgs:
    words = (args or "").split()
    if len(words) < 2 or len(words) % 2:
        raise EntryArgsError(_("Usage: /long SYMBOL SIZE [sl PRICE|PCT%] [tp PRICE|PCT%], "
                               "e.g. /long BTCUSDT $500 sl 2%"))
    symbol, size = words[0], parse_size(words[1])
    found: dict[str, PriceSpec] = {}
    for key, value in zip(words[2::2], words[3::2], strict=True):
        key = key.lower()
        if key not in ("sl", "tp") or key in found:
            raise EntryArgsError(_("Expected sl or tp (once each), not {word}").format(
                word=key))
        found[key] = parse_price(value, _("stop") if key == "sl" else _("take-profit"))
    return EntryArgs(symbol, size, found.get("sl"), found.get("tp"))
