"""Issue 17: critical alerts first in every chat, one chat's backlog never delays another, stale
routine alerts dropped with a count, stranger digests bounded and remembered across restarts.

The notifier runs with a real aiogram Bot over real HTTP against the fake Bot API, a real SQLite
file and a ManualClock (every wait is on the clock).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiogram.types import User

from engine.clock import ManualClock
from tests.bot.conftest import ADMIN
from tests.bot.test_outbox_e2e import GROUP, Rig, eventually, failure, make_rig, ok, sla
from tests.fakes import FakeBotAPI

ADMIN2 = 101
CRITICAL = "NO STOP for 7 s"


def stranger(n: int, name: str = "") -> User:
    return User(id=5_000_000 + n, is_bot=False, first_name=name or f"Stranger{n}")


def digests(api: FakeBotAPI, chat: int) -> list[str]:
    return [t for t in api.texts(chat) if t.startswith("🔒")]


def reported(text: str) -> int:
    """How many strangers one digest reports."""
    if match := re.search(r"ignored: (\d+)\.", text):
        return int(match.group(1))
    assert "wrote to the bot and was ignored" in text, text
    return 1


@pytest.fixture
async def two_chats(api: FakeBotAPI, tmp_path: Path) -> AsyncIterator[Rig]:
    r = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock(), chats=(ADMIN, GROUP))
    try:
        yield r
    finally:
        await r.close()


async def routine_backlog(rig: Rig, chat: int, n: int) -> None:
    for i in range(n):
        await rig.notifier.enqueue(chat, f"routine alert {i} for {chat}")


# --- priority ------------------------------------------------------------------------------
async def test_a_critical_alert_goes_first_alone_and_rings_despite_a_routine_backlog(
        two_chats: Rig) -> None:
    rig, api = two_chats, two_chats.api
    await routine_backlog(rig, ADMIN, 1000)
    await routine_backlog(rig, GROUP, 1000)
    rig.start()
    await api.wait_for("sendMessage", ok(GROUP, "routine alert 0 "))
    await rig.clock.advance(0.5)
    await rig.notifier.on_event(sla())  # raised while both chats are paced
    await rig.clock.advance(0.5)  # the private chat's next slot: 1 s after its last message
    [first] = await api.wait_for("sendMessage", ok(ADMIN, CRITICAL))
    assert first.text == "[paper] 🚨 ETH/USDT:USDT: NO STOP for 7 s (over the SLA)"
    assert first.params["disable_notification"] is False
    await rig.clock.advance(2)  # the group's next slot: 3 s after its last message
    [in_group] = await api.wait_for("sendMessage", ok(GROUP, CRITICAL))
    assert in_group.text == first.text
    # Each chat got exactly one message before the critical alert: waits were pacing only.
    assert [CRITICAL in t for t in api.texts(ADMIN)] == [False, True]
    assert [CRITICAL in t for t in api.texts(GROUP)] == [False, True]
    assert rig.sends() == [0.0, 0.0, 1.0, 3.0]


async def test_one_chats_backlog_never_hides_another_chats_alert(two_chats: Rig) -> None:
    rig, api = two_chats, two_chats.api
    await routine_backlog(rig, ADMIN, 700)  # more than the old 500-row read window
    await rig.notifier.enqueue(GROUP, "the group's only alert")
    rig.start()
    await api.wait_for("sendMessage", ok(GROUP, "the group's only alert"))
    assert rig.sends() == [0.0, 0.0]  # both chats served in the first pass


async def test_stale_routine_alerts_are_dropped_with_a_count_and_critical_ones_never(
        api: FakeBotAPI, tmp_path: Path) -> None:
    rig = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock(), routine_max_age=60)
    try:
        for n in range(3):
            await rig.notifier.on_event(failure(f"old news {n}"))
        await rig.notifier.on_event(sla())
        await rig.clock.advance(61)  # Telegram was unreachable, say: nothing was sent
        await rig.notifier.on_event(failure("fresh news"))
        rig.start()
        [critical] = await api.wait_for("sendMessage", ok(ADMIN))
        assert critical.text == "[paper] 🚨 ETH/USDT:USDT: NO STOP for 7 s (over the SLA)"
        await rig.clock.advance(1)
        [_, routine] = await api.wait_for("sendMessage", ok(ADMIN), count=2)
        assert routine.text == (
            "[paper] ⚠️ venue error in fetch_positions: Transient fresh news\n"
            "ℹ️ Routine alerts dropped unsent: they waited more than 1 min (critical alerts are "
            "never dropped) (×3)")
        assert not any("old news" in t for t in api.texts(ADMIN))
        dropped = await rig.db.conn.execute_fetchall(
            "SELECT text, last_error FROM outbox WHERE status = 'dropped'")
        assert sorted(r[0][-10:] for r in dropped) == ["old news 0", "old news 1", "old news 2"]
        assert {r[1] for r in dropped} == {"routine alert older than 60 s"}
    finally:
        await rig.close()


# --- strangers -----------------------------------------------------------------------------
async def test_strangers_get_one_digest_per_admin_per_window(api: FakeBotAPI,
                                                            tmp_path: Path) -> None:
    rig = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock(),
                         admins=(ADMIN, ADMIN2), stranger_window=600)
    try:
        rig.start()
        await rig.notifier.on_stranger(stranger(0))  # the first one is reported at once
        for admin in (ADMIN, ADMIN2):
            [alert] = await api.wait_for("sendMessage", ok(admin, "(id 5000000)"))
            assert alert.text.startswith("🔒 “Stranger0” (id 5000000) wrote to the bot")
        for n in range(1, 301):
            await rig.notifier.on_stranger(stranger(n))
            await rig.notifier.on_stranger(stranger(n))  # a second update changes nothing
        await rig.notifier.on_stranger(stranger(0))  # already reported
        await rig.clock.advance(599)
        assert [len(digests(api, a)) for a in (ADMIN, ADMIN2)] == [1, 1]
        await rig.clock.advance(1)
        for admin in (ADMIN, ADMIN2):
            [_, digest] = await api.wait_for("sendMessage", ok(admin, "🔒"), count=2)
            assert reported(digest.text) == 300
            assert "in the last 10 min" in digest.text
            assert ("Newest: “Stranger300” (id 5000300), “Stranger299” (id 5000299), "
                    "“Stranger298” (id 5000298), “Stranger297” (id 5000297), "
                    "“Stranger296” (id 5000296).") in digest.text
            ids = re.search(r"Their ids, newest first: ([\d, ]+)\.", digest.text)
            assert ids is not None
            assert ids.group(1).split(", ") == [str(5_000_300 - i) for i in range(20)]
            assert len(digest.text) < 1000
        await rig.clock.advance(3600)  # no strangers, no digest
        assert [len(digests(api, a)) for a in (ADMIN, ADMIN2)] == [2, 2]
    finally:
        await rig.close()


async def test_reported_strangers_are_remembered_across_a_restart_and_bounded(
        api: FakeBotAPI, tmp_path: Path) -> None:
    path = tmp_path / "vigil.sqlite3"
    first = await make_rig(api, path, ManualClock(), strangers_kept=50)
    try:
        first.start()
        await first.notifier.on_stranger(stranger(0))
        for n in range(1, 100):
            await first.notifier.on_stranger(stranger(n))
        await first.clock.advance(600)
        await eventually(lambda: _known(first, 50))
        await eventually(lambda: _nothing_pending(first))
        assert sum(reported(t) for t in digests(api, ADMIN)) == 100
    finally:
        await first.close()
    later = ManualClock(start=first.clock.now() + timedelta(seconds=5))
    second = await make_rig(api, path, later, strangers_kept=50)
    try:
        second.start()
        await second.notifier.on_stranger(stranger(99))  # reported last run: nothing new
        await second.notifier.on_stranger(stranger(1000))  # a new one: reported at once
        [_, _, alert] = await api.wait_for("sendMessage", ok(ADMIN, "🔒"), count=3)
        assert "(id 5001000)" in alert.text
        assert await _known(second, 50)  # only the newest 50 are kept
    finally:
        await second.close()


async def _nothing_pending(rig: Rig) -> bool:
    return await rig.outbox.pending_count() == 0


async def _known(rig: Rig, n: int) -> bool:
    rows = await rig.db.conn.execute_fetchall("SELECT COUNT(*) FROM reported_strangers")
    return next(iter(rows))[0] == n


async def test_hostile_names_are_cleaned_quoted_and_shown_with_their_ids(
        api: FakeBotAPI, tmp_path: Path) -> None:
    rig = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock())
    try:
        rig.start()
        await rig.notifier.on_stranger(stranger(1, "\u202eVigil ✅ Con\u200bfirmed by admin\u2066"))
        [alert] = await api.wait_for("sendMessage", ok(ADMIN, "(id 5000001)"))
        assert alert.text.startswith(
            "🔒 “Vigil ✅ Confirmed by admin” (id 5000001) wrote to the bot")
        name = "Vigil\n✅ Confirmed\u200f by admin " + "x" * 99
        await rig.notifier.on_stranger(stranger(2, name))
        await rig.notifier.on_stranger(stranger(3, "\u200b\u200d"))
        await rig.clock.advance(600)
        [_, digest] = await api.wait_for("sendMessage", ok(ADMIN, "🔒"), count=2)
        assert "Newest: “?” (id 5000003), “Vigil ✅ Confirmed by admin xxxx…” (id 5000002)." \
            in digest.text
        assert not any(ch in t for t in api.texts(ADMIN) for ch in "\u202e\u200b\u2066\u200f")
    finally:
        await rig.close()



async def test_strangers_arriving_together_make_one_digest_not_one_each(
        api: FakeBotAPI, tmp_path: Path) -> None:
    rig = await make_rig(api, tmp_path / "vigil.sqlite3", ManualClock(), stranger_window=600)
    try:
        rig.start()
        await asyncio.gather(*(rig.notifier.on_stranger(stranger(n)) for n in range(50)))
        await api.wait_for("sendMessage", ok(ADMIN, "🔒"))
        await rig.clock.advance(600)
        await api.wait_for("sendMessage", ok(ADMIN, "🔒"), count=2)
        assert sum(reported(t) for t in digests(api, ADMIN)) == 50
        assert len(digests(api, ADMIN)) == 2
    finally:
        await rig.close()
