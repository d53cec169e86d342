"""Daily PnL end to end: the real Runtime (paper mode, real aiogram polling over real HTTP against
the fake Bot API server, a real SQLite file) and a ManualClock driving the schedule: /pnl
answers, and the daily report with its chart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.reports import DailyReporter
from engine.clock import ManualClock, SystemClock
from engine.sim.exchange import HandApi, SimExchange
from tests.bot.conftest import ADMIN, STRANGER, VIEWER, running
from tests.fakes import FakeBotAPI, SentCall
from vigil.runtime import Runtime

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # 15:00 in Moscow
DAILY = time(15, 1)  # Moscow: 12:01 UTC, a minute after START
SLOT = datetime(2026, 1, 5, 12, 1, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n"
WAIT = 15.0  # seconds of real time for the outbox's real-time pacing


class InstantClock(SystemClock):
    """Telegram's retry_after waits, recorded instead of slept."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


@dataclass
class Rig:
    api: FakeBotAPI
    runtime: Runtime
    telegram_clock: InstantClock
    clock: ManualClock

    @property
    def sim(self) -> SimExchange:
        assert self.runtime.engine is not None
        return self.runtime.engine.sims["paper"]

    @property
    def reporter(self) -> DailyReporter:
        assert self.runtime.reporter is not None
        return self.runtime.reporter

    async def caught_up(self) -> None:
        """Start-up's look at missed reports is over: the schedule now waits on the clock."""
        assert self.reporter.schedule is not None
        await asyncio.wait_for(self.reporter.schedule.caught_up.wait(), WAIT)


@asynccontextmanager
async def vigil(api: FakeBotAPI, data_dir: Path, start: datetime = START) -> AsyncIterator[Rig]:
    clock, telegram_clock = ManualClock(start), InstantClock()
    async with running(api, data_dir, clock, telegram_clock,
                       reports={"daily_time": DAILY.isoformat(), "timezone": "Europe/Moscow"},
                       sim={"price_interval_seconds": 86_400}  # marks move when a test moves them
                       ) as r:
        yield Rig(api=api, runtime=r.runtime, clock=clock, telegram_clock=telegram_clock)


@pytest.fixture
async def rig(api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[Rig]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    async with vigil(api, tmp_path / "data") as r:
        yield r


def to(chat: int, contains: str = ""):
    def match(call: SentCall) -> bool:
        return (str(call.chat_id) == str(chat) and contains in (call.text or "")
                and not call.failed)
    return match


def realize_a_profit(r: Rig) -> None:
    """Cover a third of the demo's ETH short after the price fell: realized PnL and a fee."""
    r.sim.set_mark(ETH, Decimal("3100"))
    HandApi(r.sim).close(ETH, Decimal("0.5"))


async def test_pnl_answers_with_text_and_chart(rig: Rig) -> None:
    await rig.caught_up()
    realize_a_profit(rig)
    closing = rig.sim.fills[-1]
    await rig.clock.advance(6)  # past the on-demand freshness of the start-up sync
    rig.api.push_message(VIEWER, "/pnl")

    [text] = await rig.api.wait_for("sendMessage", to(VIEWER, "📊 PnL"), timeout=WAIT)
    assert "(Europe/Moscow)" in text.text and "2026-01-05 00:00 — 2026-01-05 15:00" in text.text
    assert "Account paper (sim), USDT" in text.text
    pnl = closing.realized_pnl.quantize(Decimal("0.01"))
    assert f"{ETH}: realized +{pnl}" in text.text
    assert f"{BTC}: realized 0" in text.text  # open with fees: a row of its own
    assert "unrealized now" in text.text
    [photo] = await rig.api.wait_for("sendPhoto", to(VIEWER), timeout=WAIT)
    assert photo.params["photo"].startswith(PNG)
    assert photo.filenames["photo"] == "pnl.png"
    assert photo.text.startswith("📊 paper: net +") and "USDT" in photo.text
    assert len(photo.text) <= 1024

    rig.api.push_message(VIEWER, "/pnl 7")
    [week] = await rig.api.wait_for("sendMessage", to(VIEWER, "2025-12-30 00:00"), timeout=WAIT)
    assert f"{ETH}: realized +{pnl}" in week.text
    photos = await rig.api.wait_for("sendPhoto", to(VIEWER), count=2, timeout=WAIT)
    assert all(p.params["photo"].startswith(PNG) for p in photos)


@pytest.mark.parametrize("args", ["abc", "0", "91", "7 days", "-1"])
async def test_pnl_with_bad_days_gets_the_usage(rig: Rig, args: str) -> None:
    rig.api.push_message(VIEWER, f"/pnl {args}")
    await rig.api.wait_for("sendMessage", to(VIEWER, "Usage: /pnl [days], days from 1 to 90"),
                           timeout=WAIT)
    assert rig.api.sent("sendPhoto") == []


async def test_pnl_speaks_russian_and_ignores_strangers(rig: Rig) -> None:
    rig.api.push_message(VIEWER, "/pnl", language_code="ru")
    await rig.api.wait_for("sendMessage", to(VIEWER, "Счёт paper (sim), USDT"), timeout=WAIT)
    rig.api.push_message(STRANGER, "/pnl")
    rig.api.push_message(VIEWER, "/pnl 2", language_code="ru")
    await rig.api.wait_for("sendMessage", to(VIEWER, "2026-01-04 00:00"), timeout=WAIT)
    assert rig.api.sent(chat_id=STRANGER) == []


async def test_help_lists_pnl(rig: Rig) -> None:
    rig.api.push_message(VIEWER, "/help")
    await rig.api.wait_for("sendMessage", to(VIEWER, "/pnl [days] — realized PnL"),
                           timeout=WAIT)


async def test_daily_report_arrives_at_the_scheduled_time(rig: Rig) -> None:
    realize_a_profit(rig)
    await rig.caught_up()
    assert rig.reporter.sent == []  # nothing missed at a first start

    await rig.clock.advance(59)  # 15:00:59 in Moscow: not yet
    assert rig.reporter.sent == [] and rig.api.sent("sendPhoto") == []
    await rig.clock.advance(1)  # 15:01

    [photo] = await rig.api.wait_for("sendPhoto", to(ADMIN), timeout=WAIT)
    assert photo.params["photo"].startswith(PNG)
    assert "2026-01-04 — 2026-01-05" in photo.text  # [yesterday 15:01, today 15:01)
    [text] = await rig.api.wait_for("sendMessage", to(ADMIN, "📊 Daily PnL report"),
                                    timeout=WAIT)
    assert "2026-01-04 15:01 — 2026-01-05 15:01 (Europe/Moscow)" in text.text
    assert f"{ETH}: realized +" in text.text
    assert rig.reporter.sent == [SLOT]
    assert rig.api.sent("sendPhoto", chat_id=VIEWER) == []  # alert chats only


async def test_a_run_missed_while_stopped_is_sent_on_start_once(
        api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    async with vigil(api, data) as r:  # first start: records where the schedule stands
        await r.caught_up()
        assert r.reporter.sent == []

    # Stopped over today's 15:01; started again at 17:00 Moscow, within the 6 h grace.
    async with vigil(api, data, start=SLOT + timedelta(hours=1, minutes=59)) as r:
        await r.caught_up()
        assert r.reporter.sent == [SLOT]  # sent during start-up
        [photo] = await api.wait_for("sendPhoto", to(ADMIN), timeout=WAIT)
        assert photo.params["photo"].startswith(PNG)
        await api.wait_for("sendMessage", to(ADMIN, "📊 Daily PnL report"), timeout=WAIT)

    async with vigil(api, data, start=SLOT + timedelta(hours=2)) as r:  # restarted again
        await r.caught_up()
        assert r.reporter.sent == []
    assert len(api.sent("sendPhoto")) == 1  # never twice for one scheduled time
    assert len([c for c in api.sent("sendMessage") if "Daily PnL" in (c.text or "")]) == 1


async def test_a_429_on_the_chart_is_waited_out_once(rig: Rig) -> None:
    rig.api.fail_next("sendPhoto", error_code=429, description="Too Many Requests: retry after 7",
                      retry_after=7)
    await rig.caught_up()
    await rig.clock.advance(60)
    photos = await rig.api.wait_for("sendPhoto", lambda c: c.chat_id == ADMIN, count=2,
                                    timeout=WAIT)
    assert [c.failed for c in photos] == [True, False]
    assert photos[1].params["photo"].startswith(PNG)
    assert rig.telegram_clock.slept.count(7) == 1  # waited as told, once
