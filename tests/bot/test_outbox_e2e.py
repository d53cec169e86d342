"""The durable alert outbox end to end: a real aiogram Bot over real HTTP against the fake Bot
API server, a real SQLite file, and a ManualClock, so every wait is on the clock, not real time.

Each request is stamped with the clock's time by a session middleware, which is how the tests
check that a retry or a second message came no earlier than it should.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.i18n import build_i18n
from bot.notifier import Notifier
from bot.roles import RoleBook
from engine.clock import ManualClock
from engine.domain import events as ev
from storage.db import Database
from storage.outbox import OutboxRepo
from storage.repositories import StateRepo
from tests.bot.conftest import ADMIN, telegram_settings
from tests.fakes import FakeBotAPI, SentCall
from vigil.runtime import Runtime

GROUP = -1001234


@dataclass
class Rig:
    api: FakeBotAPI
    clock: ManualClock
    db: Database
    outbox: OutboxRepo
    notifier: Notifier
    bot: Bot
    attempts: list[tuple[str, Any, float]] = field(default_factory=list)  # method, chat, clock
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.notifier.run(), name="notifier")

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.bot.session.close()
        await self.db.close()

    def sends(self) -> list[float]:
        """Clock times of every sendMessage attempt."""
        return [at for method, _, at in self.attempts if method == "sendMessage"]


async def make_rig(api: FakeBotAPI, path: Path, clock: ManualClock,
                   chats: tuple[int, ...] = (ADMIN,), admins: tuple[int, ...] = (ADMIN,),
                   **options: Any) -> Rig:
    db = await Database.open(path)
    state, outbox = StateRepo(db), OutboxRepo(db)
    bot = Bot(api.token, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
    notifier = Notifier(bot, chats=chats, roles=RoleBook(admins=admins), i18n=build_i18n(),
                        state=state, clock=clock, outbox=outbox, **options)
    rig = Rig(api, clock, db, outbox, notifier, bot)

    async def stamp(make_request: Callable[..., Awaitable[Any]], bot: Bot, method: Any) -> Any:
        rig.attempts.append((method.__api_method__, getattr(method, "chat_id", None),
                             clock.monotonic()))
        return await make_request(bot, method)

    bot.session.middleware(stamp)
    return rig


@pytest.fixture
async def rig(api: FakeBotAPI, tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock())
    try:
        yield r
    finally:
        await r.close()


def ok(chat: int, contains: str = "") -> Callable[[SentCall], bool]:
    def match(call: SentCall) -> bool:
        return call.chat_id == chat and contains in (call.text or "") and not call.failed
    return match


def refused(contains: str = "") -> Callable[[SentCall], bool]:
    return lambda call: call.failed and contains in (call.text or "")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    """Wait for the sender's bookkeeping (an outbox write after an HTTP answer)."""
    async with asyncio.timeout(timeout):
        while True:  # polling the database: nothing to wait on
            if await check():
                return
            await asyncio.sleep(0.005)


def failure(message: str = "API down") -> ev.VenueFailure:
    return ev.VenueFailure(account="paper", operation="fetch_positions", error="Transient",
                           message=message)


def sla(seconds: int = 7) -> ev.SlaBreached:
    return ev.SlaBreached(account="paper", symbol="ETH/USDT:USDT",
                          unprotected_seconds=Decimal(seconds))


def resized() -> ev.PositionResized:
    return ev.PositionResized(account="paper", symbol="BTC/USDT:USDT", old_qty=Decimal("0.05"),
                              new_qty=Decimal("0.08"))


# --- the three things issue #5 asks to see ---------------------------------------------------
async def test_429_waits_retry_after_then_delivers(rig: Rig) -> None:
    rig.api.fail_next("sendMessage", error_code=429,
                      description="Too Many Requests: retry after 1", retry_after=1)
    rig.start()
    await rig.notifier.on_event(failure("rate limited once"))
    await rig.api.wait_for("sendMessage", refused("rate limited once"))
    [row] = await rig.outbox.pending()
    await eventually(lambda: _attempts(rig, row.id, 1))

    await rig.clock.advance(0.999)
    assert rig.api.texts(ADMIN) == [] and len(rig.sends()) == 1  # still holding
    await rig.clock.advance(0.001)
    [delivered] = await rig.api.wait_for("sendMessage", ok(ADMIN, "rate limited once"))

    first, second = rig.sends()
    assert second - first >= 1.0  # per the clock, no earlier than retry_after
    assert delivered.params["disable_notification"] is True  # a warning: silent
    await eventually(lambda: _status(rig, row.id, "sent"))
    sent = await rig.outbox.get(row.id)
    assert sent is not None and sent.attempts == 1 and sent.last_error is None


async def test_6000_character_alert_goes_as_two_messages_split_on_a_line(rig: Rig) -> None:
    lines = [f"line {n:03d} " + "·" * 50 for n in range(100)]  # 59 characters each
    lines[-1] += "!"
    text = "\n".join(lines)
    assert len(text) == 6000
    await rig.notifier.enqueue(ADMIN, text, loud=True)
    rig.start()
    [first] = await rig.api.wait_for("sendMessage", ok(ADMIN))
    row = (await rig.outbox.pending())[0]
    assert row.status == "pending"  # half delivered: not done yet

    await rig.clock.advance(1)  # pacing: one message a second to one chat
    first, second = await rig.api.wait_for("sendMessage", ok(ADMIN), count=2)
    assert len(first.text) <= 4096 and len(second.text) <= 4096
    assert first.text == "\n".join(lines[:first.text.count("\n") + 1])  # whole lines
    assert first.text + "\n" + second.text == text  # nothing lost, in order
    assert first.params["disable_notification"] is False  # loud, both parts
    assert second.params["disable_notification"] is False
    t1, t2 = rig.sends()
    assert t2 - t1 >= 1.0
    await eventually(lambda: _status(rig, row.id, "sent"))
    assert len(rig.sends()) == 2  # the first part was not sent again


async def test_alert_queued_before_a_restart_is_delivered_after_it(api: FakeBotAPI,
                                                                   tmp_path: Path) -> None:
    path = tmp_path / "vigil.sqlite3"
    first = await make_rig(api, path, ManualClock())
    try:
        api.fail_next("sendMessage", error_code=502, description="Bad Gateway")
        first.start()
        await first.notifier.on_event(failure("raised while Telegram was down"))
        await api.wait_for("sendMessage", refused("raised while Telegram was down"))
        [row] = await first.outbox.pending()
        await eventually(lambda: _attempts(first, row.id, 1))
        # Raised just before shutdown, while the chat waits out its backoff: never attempted.
        await first.notifier.on_event(sla())
        await first.notifier.flush(timeout=0.5)  # does not wait out the backoff
        assert await first.outbox.pending_count() == 2
    finally:
        await first.close()

    later = ManualClock(start=first.clock.now() + timedelta(seconds=5))
    second = await make_rig(api, path, later)
    try:
        second.start()
        # The critical alert goes first, alone and ringing; the routine one after the pacing.
        [critical] = await api.wait_for("sendMessage", ok(ADMIN))
        assert critical.text == "[paper] 🚨 ETH/USDT:USDT: NO STOP for 7 s (over the SLA)"
        assert critical.params["disable_notification"] is False
        await second.clock.advance(1)
        [_, routine] = await api.wait_for("sendMessage", ok(ADMIN), count=2)
        assert routine.text == ("[paper] ⚠️ venue error in fetch_positions: Transient raised "
                                "while Telegram was down")
        assert routine.params["disable_notification"] is True
        await eventually(lambda: _count(second, "sent", 2))
        assert second.sends() == [0.0, 1.0]
    finally:
        await second.close()


async def test_runtime_restart_delivers_what_the_last_run_could_not(
        api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring: Runtime's notifier writes to the engine's database, and a new Runtime on the
    same data directory delivers it (the runtime paces on real time: this test takes ~2 s)."""
    monkeypatch.chdir(tmp_path)
    settings = telegram_settings(api, tmp_path / "data")
    api.fail_next("sendMessage", error_code=429,
                  description="Too Many Requests: retry after 1", retry_after=1)
    first = Runtime(settings)
    await first.start()
    try:
        [bounced] = await api.wait_for("sendMessage", refused("Vigil started"))
        assert first.engine is not None
        await first.engine.bus.publish(failure("queued before a restart"))
    finally:
        await first.stop()
    with sqlite3.connect(settings.db_path) as raw:
        pending = dict(raw.execute(
            "SELECT text, attempts FROM outbox WHERE status = 'pending'").fetchall())
    assert pending["[engine] Vigil started (paper mode)"] == 1
    assert pending["[paper] ⚠️ venue error in fetch_positions: Transient queued before a "
                   "restart"] == 0

    second = Runtime(settings)
    await second.start()
    try:
        [delivered] = await api.wait_for("sendMessage", ok(ADMIN, "queued before a restart"))
        assert delivered.at - bounced.at >= 1.0  # retry_after honoured across the restart
        assert len(api.texts(ADMIN)) == 1  # everything that was waiting, in one message
        # Oldest first, and the second start's identical alert coalesced into the first's.
        assert delivered.text.startswith("[engine] Vigil started (paper mode) (×2)\n")
        # The two adoption alerts keep their buttons: a keyboard row each, naming its market.
        rows = delivered.params["reply_markup"]["inline_keyboard"]
        assert [row[0]["text"] for row in rows] == ["✖️ Close · BTC/USDT:USDT",
                                                    "✖️ Close · ETH/USDT:USDT"]
    finally:
        await second.stop()


# --- the rest of the contract --------------------------------------------------------------
async def test_blocked_chat_is_dropped_and_admins_are_told(rig: Rig) -> None:
    rig.notifier.chats.append(GROUP)
    rig.api.block_chat(GROUP)
    rig.start()
    await rig.notifier.on_event(failure("first"))
    await rig.api.wait_for("sendMessage", ok(ADMIN, "first"))
    await rig.api.wait_for("sendMessage", lambda c: c.chat_id == GROUP and c.failed)
    await rig.clock.advance(1)
    [told] = await rig.api.wait_for("sendMessage", ok(ADMIN, str(GROUP)))
    assert "blocked the bot" in told.text and "1 undelivered dropped" in told.text
    assert told.params["disable_notification"] is False
    assert rig.notifier.chats == [ADMIN]
    assert await rig.outbox.pending_count(GROUP) == 0

    await rig.clock.advance(1)
    await rig.notifier.on_event(failure("second"))
    await rig.api.wait_for("sendMessage", ok(ADMIN, "second"))
    assert len(rig.api.sent("sendMessage", chat_id=GROUP)) == 1  # never tried again


async def test_three_identical_alerts_coalesce_into_one_message_with_a_count(rig: Rig) -> None:
    for _ in range(3):
        await rig.notifier.on_event(failure("timeout"))
    await rig.notifier.on_event(resized())
    assert await rig.outbox.pending_count() == 2
    rig.start()
    [message] = await rig.api.wait_for("sendMessage", ok(ADMIN))
    assert message.text == ("[paper] ⚠️ venue error in fetch_positions: Transient timeout (×3)\n"
                            "[paper] ↕️ BTC/USDT:USDT: size 0.05 → 0.08")
    await eventually(lambda: _count(rig, "sent", 2))
    assert len(rig.sends()) == 1


async def test_critical_alerts_ring_and_routine_ones_are_silent(rig: Rig) -> None:
    rig.start()
    await rig.notifier.on_event(sla())
    [critical] = await rig.api.wait_for("sendMessage", ok(ADMIN, "NO STOP"))
    await rig.notifier.on_event(resized())
    await rig.clock.advance(1)
    [routine] = await rig.api.wait_for("sendMessage", ok(ADMIN, "size 0.05 → 0.08"))
    assert critical.params["disable_notification"] is False
    assert routine.params["disable_notification"] is True


async def test_server_errors_back_off_with_jitter_and_keep_the_alert(rig: Rig) -> None:
    rig.api.fail_next("sendMessage", error_code=500, description="Internal Server Error",
                      times=2)
    rig.start()
    await rig.notifier.on_event(failure("flaky"))
    [row] = await rig.outbox.pending()
    await eventually(lambda: _attempts(rig, row.id, 1))
    held = await rig.outbox.get(row.id)
    assert held is not None and held.last_error and "Internal Server Error" in held.last_error
    first_wait = (held.next_attempt_at - held.created_at).total_seconds()
    assert 0.5 <= first_wait <= 1.0  # 1 s, with jitter
    await rig.clock.advance(1)
    await eventually(lambda: _attempts(rig, row.id, 2))
    again = await rig.outbox.get(row.id)
    assert again is not None
    second_wait = (again.next_attempt_at - rig.clock.now()).total_seconds()
    assert 1.0 <= second_wait <= 2.0  # doubled
    await rig.clock.advance(2)
    await rig.api.wait_for("sendMessage", ok(ADMIN, "flaky"))
    assert len(rig.sends()) == 3


async def test_bad_request_drops_only_that_alert(rig: Rig) -> None:
    rig.api.fail_next("sendMessage", error_code=400, description="Bad Request: can't parse")
    rig.start()
    await rig.notifier.on_event(failure("unsendable"))
    [row] = await rig.outbox.pending()
    await eventually(lambda: _status(rig, row.id, "dropped"))
    dropped = await rig.outbox.get(row.id)
    assert dropped is not None and dropped.last_error == "400: Bad Request: can't parse"
    await rig.clock.advance(1)
    await rig.notifier.on_event(failure("fine"))
    await rig.api.wait_for("sendMessage", ok(ADMIN, "fine"))


async def test_global_pace_is_at_most_25_messages_a_second(api: FakeBotAPI,
                                                           tmp_path: Path) -> None:
    chats = tuple(range(1, 31))
    r = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock(), chats=chats)
    try:
        await r.notifier.on_event(sla())
        r.start()
        await api.wait_for("sendMessage", ok_any("NO STOP"), count=25)
        assert len(r.sends()) == 25 and set(r.sends()) == {0.0}
        await r.clock.advance(1)
        await api.wait_for("sendMessage", ok_any("NO STOP"), count=30)
        assert r.sends()[25:] == [1.0] * 5
    finally:
        await r.close()


async def test_routine_messages_leave_part_of_the_global_pace_to_critical_ones(
        api: FakeBotAPI, tmp_path: Path) -> None:
    chats = tuple(range(1, 31))
    r = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock(), chats=chats)
    try:
        await r.notifier.on_event(failure("everyone"))
        r.start()
        await api.wait_for("sendMessage", ok_any("everyone"), count=20)
        await r.notifier.enqueue(31, "critical for a quiet chat", loud=True)
        await api.wait_for("sendMessage", ok_any("critical for a quiet chat"))
        assert r.sends() == [0.0] * 21  # the 21st message of the second: the critical one
        await r.clock.advance(1)
        await api.wait_for("sendMessage", ok_any("everyone"), count=30)
        assert r.sends()[21:] == [1.0] * 10
    finally:
        await r.close()


def ok_any(contains: str) -> Callable[[SentCall], bool]:
    return lambda call: not call.failed and contains in (call.text or "")


async def _attempts(rig: Rig, row_id: int, n: int) -> bool:
    row = await rig.outbox.get(row_id)
    return row is not None and row.attempts >= n


async def _status(rig: Rig, row_id: int, status: str) -> bool:
    row = await rig.outbox.get(row_id)
    return row is not None and row.status == status


async def _count(rig: Rig, status: str, n: int) -> bool:
    rows = await rig.db.conn.execute_fetchall(
        "SELECT COUNT(*) FROM outbox WHERE status = ?", (status,))
    return next(iter(rows))[0] >= n


async def test_a_storm_of_alerts_with_buttons_goes_out_a_few_messages_at_a_time(
        rig: Rig) -> None:
    """12 positions over the SLA at once: not 12 messages at the chat's pace, but 10 alerts
    with a keyboard row each, then the other 2."""
    for n in range(12):
        await rig.notifier.on_event(ev.SlaBreached(
            account="paper", symbol=f"S{n:02d}/USDT:USDT", unprotected_seconds=Decimal(9),
            generation=1))
    rig.start()
    [first] = await rig.api.wait_for("sendMessage", ok(ADMIN))
    await rig.clock.advance(1)  # the chat's pacing
    [_, second] = await rig.api.wait_for("sendMessage", ok(ADMIN), count=2)
    for message, symbols in ((first, range(10)), (second, range(10, 12))):
        rows = message.params["reply_markup"]["inline_keyboard"]
        assert [row[0]["text"] for row in rows] == [f"✖️ Close · S{n:02d}/USDT:USDT"
                                                    for n in symbols]
        assert all(len(row) == 3 for row in rows)
        assert (message.text or "").count("NO STOP") == len(symbols)

    async def delivered() -> bool:
        return await rig.outbox.pending_count() == 0
    await eventually(delivered)


# --- issue 16: the enqueue path's SQL ---------------------------------------------------------
async def traced(db: Database, action: Callable[[], Awaitable[Any]]) -> list[str]:
    """The statements SQLite runs on the shared connection during `action`."""
    seen: list[str] = []
    await db.run(lambda conn: conn.set_trace_callback(seen.append))
    try:
        await action()
    finally:
        await db.run(lambda conn: conn.set_trace_callback(None))
    return [s.split()[0].upper() for s in seen]


async def test_an_alert_for_three_chats_is_one_transaction_and_languages_are_cached(
        api: FakeBotAPI, tmp_path: Path) -> None:
    chats = (ADMIN, 501, 502)
    rig = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock(), chats=chats)
    try:
        await StateRepo(rig.db).put("lang", "501", "ru")
        first = await traced(rig.db, lambda: rig.notifier.on_event(sla(7)))
        # 501: its /lang is known from the write; ADMIN and 502: /lang, then Telegram language
        assert first.count("SELECT") == 4
        assert first[-5:] == ["BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"]
        # Later alerts read no language: 3 chats, one commit (was 14 statements, 3 commits).
        later = await traced(rig.db, lambda: rig.notifier.on_event(sla(8)))
        assert later == ["BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"]

        # /lang through another StateRepo on the same database (as the bot's router writes
        # it): the next alert is in the new language.
        await StateRepo(rig.db).put("lang", "502", "ru")
        await rig.notifier.on_event(sla(9))
        texts = {(r.chat_id, r.text) for r in await rig.outbox.pending()}
        assert (502, "[paper] 🚨 ETH/USDT:USDT: НЕТ СТОПА уже 9 с (сверх SLA)") in texts
        assert (502, "[paper] 🚨 ETH/USDT:USDT: NO STOP for 8 s (over the SLA)") in texts
        assert (501, "[paper] 🚨 ETH/USDT:USDT: НЕТ СТОПА уже 7 с (сверх SLA)") in texts
        assert (ADMIN, "[paper] 🚨 ETH/USDT:USDT: NO STOP for 9 s (over the SLA)") in texts
        assert len(texts) == 9
    finally:
        await rig.close()


async def test_a_batched_alert_survives_a_restart_in_every_chat(api: FakeBotAPI,
                                                                 tmp_path: Path) -> None:
    path, chats = tmp_path / "vigil.sqlite3", (ADMIN, 501)
    first = await make_rig(api, path, ManualClock(), chats=chats)
    try:
        await first.notifier.on_event(sla())  # written, never sent: the sender is not running
    finally:
        await first.close()
    with closing(sqlite3.connect(path)) as conn:  # committed: another process reads it
        rows = conn.execute("SELECT chat_id, status FROM outbox").fetchall()
    assert sorted(rows) == sorted([(ADMIN, "pending"), (501, "pending")])

    second = await make_rig(api, path, ManualClock(), chats=chats)
    try:
        second.start()
        await api.wait_for("sendMessage", ok(ADMIN, "NO STOP for 7 s"))
        await api.wait_for("sendMessage", ok(501, "NO STOP for 7 s"))
    finally:
        await second.close()


async def test_alerts_raised_together_are_one_transaction_in_publish_order(
        api: FakeBotAPI, tmp_path: Path) -> None:
    rig = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock(), chats=(ADMIN, 501))
    try:
        await rig.notifier.on_event(sla(1))  # languages read once
        burst = [sla(2), resized(), failure("third")]  # what the bus queued meanwhile
        statements = await traced(rig.db, lambda: rig.notifier.on_events(burst))
        assert statements == ["BEGIN", *["INSERT"] * 6, "COMMIT"]
        rows = await rig.outbox.pending()
        assert [(r.chat_id, r.text.split(" ", 2)[1]) for r in rows[2:]] == [
            (ADMIN, "🚨"), (501, "🚨"), (ADMIN, "↕️"), (501, "↕️"), (ADMIN, "⚠️"), (501, "⚠️")]
    finally:
        await rig.close()
