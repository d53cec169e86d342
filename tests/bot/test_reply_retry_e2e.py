"""Replies, callback answers and edits survive 429 and network errors (bot/retry.py): real aiogram
over real HTTP against the fake Bot API server, every wait on a ManualClock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramRetryAfter
from loguru import logger

from bot.retry import ReplyRetry
from engine.clock import ManualClock
from tests.bot.conftest import ADMIN, VIEWER, Running, running
from tests.bot.test_outbox_e2e import eventually
from tests.fakes import FakeBotAPI, SentCall


class RecordingClock(ManualClock):
    """A ManualClock that also records every sleep asked of it, so a test knows when a waiter
    is registered before it moves time."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []
        self._asked = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self._asked.set()
        await super().sleep(seconds)

    async def asked(self, seconds: float, count: int = 1, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while self.slept.count(seconds) < count:
                self._asked.clear()
                await self._asked.wait()


def ok(chat: int, contains: str = "") -> Callable[[SentCall], bool]:
    return lambda c: c.chat_id == chat and contains in (c.text or "") and not c.failed


def failed(chat: int) -> Callable[[SentCall], bool]:
    return lambda c: c.chat_id == chat and c.failed


@pytest.fixture
def errors() -> AsyncIterator[list[str]]:
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), level="ERROR", format="{message}")
    yield seen
    logger.remove(sink)


async def settle() -> None:
    """Real time for an HTTP round trip that must NOT happen (nothing to wait on)."""
    await asyncio.sleep(0.3)


# --- the command path, end to end ----------------------------------------------------------
@pytest.fixture
async def quiet(api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[tuple[Running, RecordingClock]]:
    """Vigil without demo positions: after the start-up alert nothing else is sent, so an
    injected failure meets the request the test means it for."""
    monkeypatch.chdir(tmp_path)
    clock = RecordingClock()
    async with running(api, tmp_path / "data", telegram_clock=clock,
                       sim={"demo_positions": False}) as r:
        await api.wait_for("sendMessage", ok(ADMIN, "Vigil started"))
        yield r, clock


async def test_status_reply_waits_out_429_and_arrives_once(
        quiet: tuple[Running, RecordingClock]) -> None:
    vigil, clock = quiet
    api = vigil.api
    api.fail_next("sendMessage", error_code=429, description="Too Many Requests: retry after 3",
                  retry_after=3)
    api.push_message(VIEWER, "/status")
    [refused] = await api.wait_for("sendMessage", failed(VIEWER))
    assert "Vigil · paper mode" in refused.text
    await clock.asked(3.0)

    await clock.advance(2.9)
    await settle()
    assert api.texts(VIEWER) == []  # still waiting, as Telegram said
    await clock.advance(0.1)
    [reply] = await api.wait_for("sendMessage", ok(VIEWER, "Vigil · paper mode"))
    await clock.advance(60)
    await settle()
    assert len(api.sent("sendMessage", chat_id=VIEWER)) == 2  # the refused one and the reply
    assert api.texts(VIEWER) == [reply.text]


async def test_alerts_keep_their_own_429_handling(quiet: tuple[Running, RecordingClock]) -> None:
    """The notifier's send is not retried inside the middleware: it sees the 429 and holds the
    alert in the outbox (its sender must never block on one chat)."""
    vigil, clock = quiet
    notifier = vigil.runtime.notifier
    assert notifier is not None
    vigil.api.fail_next("sendMessage", error_code=429,
                        description="Too Many Requests: retry after 30", retry_after=30)
    await notifier.enqueue(ADMIN, "storm warning")
    await clock.advance(1)  # the chat's pacing after the start-up alert
    await vigil.api.wait_for("sendMessage", lambda c: c.failed and c.text == "storm warning")

    async def held() -> bool:
        rows = await notifier.outbox.pending(ADMIN)
        return bool(rows) and rows[0].attempts == 1 and "429" in (rows[0].last_error or "")

    await eventually(held)  # the outbox write follows the HTTP answer


# --- the middleware on its own bot -----------------------------------------------------------
async def retrying_bot(base_url: str, clock: ManualClock, **options: Any) -> Bot:
    bot = Bot("1234567:TEST-TOKEN",
              session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))
    bot.session.middleware(ReplyRetry(clock, **options))
    return bot


@pytest.fixture
async def rig(api: FakeBotAPI) -> AsyncIterator[tuple[FakeBotAPI, Bot, RecordingClock]]:
    clock = RecordingClock()
    bot = await retrying_bot(api.base_url, clock)
    try:
        yield api, bot, clock
    finally:
        await bot.session.close()


async def run_through(clock: RecordingClock, call: Awaitable[Any], sleeps: list[float]) -> Any:
    """Start a request and move the clock through the waits it is expected to ask for."""
    task = asyncio.ensure_future(call)
    for n, seconds in enumerate(sleeps):
        await clock.asked(seconds, count=sleeps[:n + 1].count(seconds))
        await clock.advance(seconds)
    return await asyncio.wait_for(task, 5)


async def test_callback_answer_backs_off_over_server_errors(
        rig: tuple[FakeBotAPI, Bot, RecordingClock]) -> None:
    api, bot, clock = rig
    api.fail_next("answerCallbackQuery", error_code=502, description="Bad Gateway", times=2)
    assert await run_through(clock, bot.answer_callback_query("7", text="Done."), [1.0, 2.0])
    calls = api.sent("answerCallbackQuery")
    assert [c.failed for c in calls] == [True, True, False]
    assert clock.slept == [1.0, 2.0]


async def test_edit_waits_out_429(rig: tuple[FakeBotAPI, Bot, RecordingClock]) -> None:
    api, bot, clock = rig
    sent = await bot.send_message(ADMIN, "Confirm?")
    api.fail_next("editMessageText", error_code=429, description="Too Many Requests",
                  retry_after=5)
    edited = await run_through(
        clock, bot.edit_message_text("Expired: nothing was done.", chat_id=ADMIN,
                                     message_id=sent.message_id), [5.0])
    assert edited.text == "Expired: nothing was done."
    assert [c.failed for c in api.sent("editMessageText")] == [True, False]


async def test_a_429_longer_than_the_bound_is_logged_and_raised_at_once(
        rig: tuple[FakeBotAPI, Bot, RecordingClock], errors: list[str]) -> None:
    api, bot, clock = rig
    api.fail_next("sendMessage", error_code=429, description="Too Many Requests",
                  retry_after=600)
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(VIEWER, "too late to matter")
    assert len(api.sent("sendMessage")) == 1 and clock.slept == []
    assert any("sendMessage to chat 300 not delivered after 1 attempts" in e for e in errors)


async def test_bad_request_is_final(rig: tuple[FakeBotAPI, Bot, RecordingClock]) -> None:
    api, bot, clock = rig
    with pytest.raises(TelegramBadRequest):
        await bot.edit_message_text("x", chat_id=ADMIN, message_id=9999)
    assert len(api.sent("editMessageText")) == 1 and clock.slept == []


async def test_network_errors_back_off_then_give_up(errors: list[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = RecordingClock()
    bot = await retrying_bot(f"http://127.0.0.1:{port}", clock, max_attempts=4)
    try:
        with pytest.raises(TelegramNetworkError):
            await run_through(clock, bot.send_message(VIEWER, "hello"), [1.0, 2.0, 4.0])
    finally:
        await bot.session.close()
    assert clock.slept == [1.0, 2.0, 4.0]
    assert any("not delivered after 4 attempts" in e for e in errors)


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ReplyRetry(ManualClock(), max_attempts=0)
