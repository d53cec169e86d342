"""`/long SYMBOL SIZE [@PRICE] [sl PRICE|PCT%] [tp PRICE|PCT%]`: the words, read into typed
values (engine/entries/words.py), with a translated reason when they are not an entry.
`@PRICE` makes it a limit entry at that price."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from aiogram.utils.i18n import gettext as _

from engine.entries.model import Amount, PriceSpec
from engine.entries.words import BadNumber, number, parse_price, parse_size

T = TypeVar("T")


class EntryArgsError(ValueError):
    """A specific, translated reason the words are not an entry."""


@dataclass(frozen=True, slots=True)
class EntryArgs:
    symbol: str
    size: Amount
    stop: PriceSpec | None
    take_profit: PriceSpec | None
    limit_price: Decimal | None = None


def _read(parse: Callable[[str], T], text: str, what: str) -> T:
    try:
        return parse(text)
    except BadNumber as exc:
        raise EntryArgsError(_("{what} must be a positive number, not {text}").format(
            what=what, text=exc.text)) from None


def parse_entry(args: str | None) -> EntryArgs:
    words = (args or "").split()
    limit = None
    if len(words) > 2 and words[2].startswith("@"):
        limit = _read(number, words.pop(2)[1:], _("limit price"))
    if len(words) < 2 or len(words) % 2:
        raise EntryArgsError(_("Usage: /long SYMBOL SIZE [@PRICE] [sl PRICE|PCT%] "
                               "[tp PRICE|PCT%], e.g. /long BTCUSDT $500 sl 2% or "
                               "/long BTCUSDT 0.01 @64000 sl 1%"))
    symbol, size = words[0], _read(parse_size, words[1], _("size"))
    found: dict[str, PriceSpec] = {}
    for key, value in zip(words[2::2], words[3::2], strict=True):
        key = key.lower()
        if key not in ("sl", "tp") or key in found:
            raise EntryArgsError(_("Expected sl or tp (once each), not {word}").format(
                word=key))
        found[key] = _read(parse_price, value,
                           _("stop") if key == "sl" else _("take-profit"))
    return EntryArgs(symbol, size, found.get("sl"), found.get("tp"), limit)
