"""PnL reports in the chat: the text (every word through gettext), the chart (a PNG drawn in
memory with matplotlib's object-oriented API on the Agg canvas: no pyplot, no global state), and
the scheduled daily report sent to every alert chat.

The daily report's text goes through the durable alert outbox (delivered after a restart if
Telegram is down); the chart goes straight to Telegram with `send_photo` (a 429 is waited out
once); a chart that cannot be sent is logged and the text stands alone.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter
from aiogram.types import BufferedInputFile
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from loguru import logger

from bot.i18n import user_locale
from bot.notifier import Notifier
from bot.render import signed
from engine.clock import Clock, SystemClock
from engine.domain.pnl import AccountPnl, DailyReport, DayTotals
from engine.ports import StateStore

ReportForSlot = Callable[[datetime, datetime], Awaitable[DailyReport]]
CAPTION_LIMIT = 1024  # Telegram's limit for a photo caption
GREEN, RED, LINE = "#2e9e4f", "#d64541", "#1f5fa8"
_DRAWING = threading.Lock()  # matplotlib is not thread-safe: one chart at a time


# --- text -----------------------------------------------------------------------------------
def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M")


def period(report: DailyReport) -> str:
    return f"{_when(report.start)} — {_when(report.end)} ({report.tz})"


def report_text(report: DailyReport, *, daily: bool = False) -> str:
    """The whole report as plain text: per account totals, then one line per symbol."""
    title = _("📊 Daily PnL report") if daily else _("📊 PnL")
    lines = [f"{title} · {period(report)}"]
    for a in report.accounts:
        lines.append("")
        lines.append(_("Account {name} ({venue}), {currency}").format(
            name=a.account, venue=a.venue, currency=a.currency))
        lines.append(_("  realized {realized} · fees {fees} · funding {funding}").format(
            realized=signed(a.realized), fees=signed(a.fees), funding=signed(a.funding)))
        lines.append(_("  net {net} · unrealized now {unrealized}").format(
            net=signed(a.net), unrealized=signed(a.unrealized)))
        if not a.symbols:
            lines.append(_("  no trades, fees or funding in this period"))
        for row in a.symbols:
            symbol = row.symbol if row.symbol is not None else _("other")
            lines.append(_("  {symbol}: realized {realized} · fees {fees} · funding {funding} "
                           "· unrealized {unrealized}").format(
                symbol=symbol, realized=signed(row.realized), fees=signed(row.fees),
                funding=signed(row.funding), unrealized=signed(row.unrealized)))
        if a.error:
            lines.append(_("  ⚠️ the ledger could not be updated ({error}); figures may be "
                           "incomplete").format(error=a.error))
    if len(report.accounts) > 1:
        lines.append("")
        lines.append(_("All accounts: net {net}").format(net=signed(report.net)))
    return "\n".join(lines)


def caption(report: DailyReport, account: AccountPnl) -> str:
    """A short photo caption (the long text goes in its own message)."""
    text = _("📊 {name}: net {net} {currency}, {start} — {end}").format(
        name=account.account, net=signed(account.net), currency=account.currency,
        start=report.start.strftime("%Y-%m-%d"), end=report.end.strftime("%Y-%m-%d"))
    return text[:CAPTION_LIMIT]


# --- chart ----------------------------------------------------------------------------------
def chart_png(days: Sequence[DayTotals], *, title: str, daily_label: str,
              cumulative_label: str, currency: str) -> bytes:
    """Bars of daily net PnL (green up, red down) and the running total as a line, as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.patches import Patch

    x = [d.day for d in days]
    nets = [d.net for d in days]
    running = list(itertools.accumulate(nets, initial=Decimal(0)))[1:]
    with _DRAWING:
        figure = Figure(figsize=(8, 4.5), dpi=100)
        FigureCanvasAgg(figure)
        bars = figure.add_subplot()
        # floats only to draw; every figure in the text is Decimal
        bars.bar(x, [float(n) for n in nets], width=0.8,
                 color=[GREEN if n >= 0 else RED for n in nets])
        bars.axhline(0, color="#999999", linewidth=0.8)
        bars.set_ylabel(currency)
        bars.set_title(title)
        bars.grid(axis="y", alpha=0.3)
        line = bars.twinx()
        line.plot(x, [float(r) for r in running], color=LINE, marker="o", markersize=2.5,
                  linewidth=1.5)
        line.set_ylabel(cumulative_label)
        bars.xaxis.set_major_formatter(DateFormatter("%d.%m"))
        for label in bars.get_xticklabels():
            label.set_rotation(45)
            label.set_horizontalalignment("right")
        _align_zero(bars, line)  # one zero line for both scales
        up, down = Patch(color=GREEN), Patch(color=RED)
        (curve,) = line.get_lines()
        bars.legend([(up, down), curve], [daily_label, cumulative_label], loc="upper left",
                    fontsize=8, handler_map={tuple: HandlerTuple(ndivide=None)})
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(out, format="png")
    return out.getvalue()


def _align_zero(*axes: Any) -> None:
    """Give every axis its zero at the same height, each still showing all of its data."""
    spans = []
    for ax in axes:
        low, high = ax.get_ylim()
        spans.append((min(low, 0.0), max(high, 0.0)))
    below = [-low / (high - low) if high > low else 0.0 for low, high in spans]
    if all(f <= 0 for f in below):
        share = 0.0
    elif all(f >= 1 for f in below):
        share = 1.0
    else:
        share = min(max(max(below), 0.05), 0.95)
    for ax, (low, high) in zip(axes, spans, strict=True):
        if share == 0.0:
            ax.set_ylim(0.0, high or 1.0)
        elif share == 1.0:
            ax.set_ylim(low or -1.0, 0.0)
        else:
            high = max(high, -low * (1 - share) / share)
            ax.set_ylim(-share * high / (1 - share), high)


async def account_chart(account: AccountPnl) -> bytes:
    """The chart of one account, labelled in the current language (drawn off the event loop)."""
    title = _("{name}: daily net PnL, last {n} days ({currency})").format(
        name=account.account, n=len(account.daily), currency=account.currency)
    return await asyncio.to_thread(
        chart_png, account.daily, title=title, daily_label=_("daily net"),
        cumulative_label=_("cumulative"), currency=account.currency)


# --- the scheduled report -------------------------------------------------------------------
class DailyReporter:
    """What the daily schedule runs: sync the ledger, build the report, send it to every alert
    chat as text (through the outbox) and one chart per account (a photo)."""

    def __init__(self, bot: Bot, report_for_slot: ReportForSlot, notifier: Notifier, *,
                 i18n: I18n, state: StateStore, clock: Clock | None = None) -> None:
        self.bot = bot
        self.report_for_slot = report_for_slot
        self.notifier = notifier
        self.i18n = i18n
        self.state = state
        self.clock = clock or SystemClock()  # Telegram's retry_after is in real seconds
        self.sent: list[datetime] = []  # ends of the reports sent (for the record and tests)
        self.schedule: Any = None  # the schedule that runs it (set by the runtime)

    async def send_scheduled(self, slot: datetime, previous: datetime) -> None:
        report = await self.report_for_slot(slot, previous)
        await self.send(report, daily=True)

    async def send(self, report: DailyReport, *, daily: bool = True) -> None:
        charts: dict[tuple[str, str], bytes] = {}  # (language, account) -> PNG
        for chat_id in list(self.notifier.chats):
            lang = await user_locale(self.state, chat_id, None, self.i18n.default_locale)
            with self.i18n.context(), self.i18n.use_locale(lang):
                text = report_text(report, daily=daily)
                captions = {a.account: caption(report, a) for a in report.accounts}
                for a in report.accounts:
                    if (lang, a.account) not in charts:
                        charts[lang, a.account] = await account_chart(a)
            await self.notifier.enqueue(chat_id, text)
            for a in report.accounts:
                await self._photo(chat_id, charts[lang, a.account], captions[a.account])
        self.sent.append(report.end)

    async def _photo(self, chat_id: int, png: bytes, text: str) -> bool:
        for attempt in (1, 2):
            try:
                await self.bot.send_photo(chat_id, BufferedInputFile(png, "pnl.png"),
                                          caption=text, disable_notification=True)
                return True
            except TelegramRetryAfter as exc:
                if attempt == 2:
                    logger.warning("PnL chart to {} not sent: 429 twice", chat_id)
                    return False
                logger.info("PnL chart to {}: 429, retrying in {} s", chat_id, exc.retry_after)
                await self.clock.sleep(exc.retry_after)
            except NotImplementedError:  # a session that cannot send pictures
                return False
            except Exception as exc:  # blocked, bad request, network: the text still goes
                logger.warning("PnL chart to {} not sent: {}: {}", chat_id,
                               type(exc).__name__, exc)
                return False
        return False
