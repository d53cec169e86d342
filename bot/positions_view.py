"""/positions for big books: a summary first (counts, the positions without a stop, the largest
PnL), then one page of positions with Prev / Next buttons that edit the message in place.

Pure: typed positions in, text and buttons out. Each page is rebuilt from the positions as they
are when it is asked for, so a page turned after the book changed shows the book as it is now
(a page past the end shows the last one). Rows are ordered unprotected first (longest without a
stop first), then by account and symbol, so pages stay put while prices move. A row is
`render.position`, a function of one `PositionView`: a column is added there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from bot import render
from engine.control import PositionView
from engine.domain.values import PositionSide

PAGE_SIZE = 20  # positions per page: two lines each, well under Telegram's 4096 characters
NAMED = 5  # positions without a stop named in the summary
TOP_PNL = 3  # largest PnL (either sign) named in the summary
UNPROTECTED_WORD = "unprotected"
# aiogram's callback data is ':'-separated; a market symbol has one (BTC/USDT:USDT).
_SEP, _SEP_STANDIN = ":", "!"


class Only(StrEnum):
    ALL = "a"
    UNPROTECTED = "u"
    SYMBOL = "s"


@dataclass(frozen=True, slots=True)
class PositionFilter:
    only: Only = Only.ALL
    symbol: str = ""  # the market (as the venue names it), for Only.SYMBOL

    def matches(self, p: PositionView) -> bool:
        match self.only:
            case Only.UNPROTECTED:
                return p.stop_price is None
            case Only.SYMBOL:
                return p.symbol == self.symbol
        return True


class PositionsPage(CallbackData, prefix="pg"):
    page: int
    only: Only
    symbol: str = ""  # the filter's market, its ':' stood in for

    @classmethod
    def of(cls, page: int, flt: PositionFilter) -> PositionsPage:
        return cls(page=page, only=flt.only, symbol=flt.symbol.replace(_SEP, _SEP_STANDIN))

    def position_filter(self) -> PositionFilter:
        return PositionFilter(self.only, self.symbol.replace(_SEP_STANDIN, _SEP))


@dataclass(frozen=True, slots=True)
class Page:
    text: str
    markup: InlineKeyboardMarkup | None
    number: int  # 0-based, after clamping
    pages: int


def ordered(views: Sequence[PositionView]) -> list[PositionView]:
    """Unprotected first (longest without a stop first), then by account and symbol."""
    return sorted(views, key=lambda p: (p.stop_price is not None, -p.unprotected_seconds,
                                        p.account, p.symbol))


def _name(p: PositionView, accounts: int) -> str:
    return p.symbol if accounts <= 1 else f"{p.account} · {p.symbol}"


def summary(views: Sequence[PositionView]) -> list[str]:
    """Counts, the positions without a stop (longest first), the largest PnL either way."""
    accounts = len({p.account for p in views})
    bare = [p for p in views if p.stop_price is None]
    longs = sum(1 for p in views if p.side is PositionSide.LONG)
    lines = [_("Positions: {n} · unprotected: {u}").format(n=len(views), u=len(bare)),
             _("Long: {long} · short: {short}").format(long=longs, short=len(views) - longs)]
    if bare:
        bare = ordered(bare)
        named = ", ".join(f"{_name(p, accounts)} ({int(p.unprotected_seconds)} s)"
                          for p in bare[:NAMED])
        more = len(bare) - NAMED
        lines.append(_("⚠️ Without a stop: {names}").format(names=named)
                     + (" " + _("and {n} more").format(n=more) if more > 0 else ""))
    top = sorted(views, key=lambda p: (-abs(p.unrealized_pnl), p.account, p.symbol))[:TOP_PNL]
    if top:
        lines.append(_("Largest PnL: {items}").format(items=", ".join(
            f"{_name(p, accounts)} {render.signed(p.unrealized_pnl)}" for p in top)))
    return lines


def empty_text(flt: PositionFilter) -> str:
    match flt.only:
        case Only.UNPROTECTED:
            return _("Every open position has a stop.")
        case Only.SYMBOL:
            return _("No open position on {symbol} now.").format(symbol=flt.symbol)
    return _("No open positions.")


def page(views: Sequence[PositionView], flt: PositionFilter, number: int,
         at: datetime) -> Page:
    """The summary of the positions the filter selects, then page `number` of them (clamped
    to the pages there are now), with Prev / Next when there is more than one page."""
    chosen = ordered([p for p in views if flt.matches(p)])
    if not chosen:
        return Page(empty_text(flt), None, 0, 0)
    pages = -(-len(chosen) // PAGE_SIZE)
    number = min(max(number, 0), pages - 1)
    lines = summary(chosen)
    if flt.only is Only.UNPROTECTED:
        lines.append(_("Showing: without a stop only"))
    lines.append("")
    lines += [render.position(p) for p in chosen[number * PAGE_SIZE:(number + 1) * PAGE_SIZE]]
    markup = None
    if pages > 1:
        lines.append("")
        lines.append(_("Page {page} of {pages} · as of {at}").format(
            page=number + 1, pages=pages, at=render.hhmmss(at)))
        markup = _keyboard(flt, number, pages)
    return Page("\n".join(lines), markup, number, pages)


def _keyboard(flt: PositionFilter, number: int, pages: int) -> InlineKeyboardMarkup | None:
    buttons = []
    if number > 0:
        buttons.append((_("◀️ Prev"), number - 1))
    if number < pages - 1:
        buttons.append((_("Next ▶️"), number + 1))
    try:
        row = [InlineKeyboardButton(text=label, callback_data=PositionsPage.of(target, flt).pack())
               for label, target in buttons]
    except ValueError:  # over Telegram's 64 bytes: a market name too long to carry, no paging
        return None
    return InlineKeyboardMarkup(inline_keyboard=[row])
