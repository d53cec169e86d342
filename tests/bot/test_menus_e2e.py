"""Per-role command menus (bot/menus.py), read back from what Vigil sent the fake Bot API and
resolved the way Telegram resolves a user's menu."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.bot.conftest import ADMIN, STRANGER, TRADER, VIEWER, Running, running
from tests.bot.test_reply_retry_e2e import RecordingClock
from tests.fakes import FakeBotAPI
from vigil.runtime import Runtime
from vigil.settings import load_settings

QUIET = {"demo_positions": False}
MenuKey = tuple[str, str | None]  # (scope: "default" or the chat id, language code)


def menus(api: FakeBotAPI) -> dict[MenuKey, list[dict[str, Any]]]:
    """Telegram's state after every setMyCommands / deleteMyCommands received, in order."""
    state: dict[MenuKey, list[dict[str, Any]]] = {}
    for call in api.sent():
        if call.method not in ("setMyCommands", "deleteMyCommands") or call.failed:
            continue
        scope = call.params.get("scope") or {"type": "default"}
        where = str(scope["chat_id"]) if scope["type"] == "chat" else scope["type"]
        key = (where, call.params.get("language_code"))
        if call.method == "setMyCommands":
            state[key] = call.params["commands"]
        else:
            state.pop(key, None)
    return state


def seen(api: FakeBotAPI, user: int, lang: str = "en") -> list[str]:
    """The menu a user sees in their private chat with the bot: the first list set of
    chat+language, chat, default+language, default (Telegram's documented order)."""
    state = menus(api)
    for key in ((str(user), lang), (str(user), None), ("default", lang), ("default", None)):
        if key in state:
            return [c["command"] for c in state[key]]
    return []


def description(api: FakeBotAPI, user: int, lang: str, command: str) -> str:
    state = menus(api)
    entries = state.get((str(user), lang)) or state[(str(user), None)]
    return next(c["description"] for c in entries if c["command"] == command)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path / "data"


@asynccontextmanager
async def menus_sent(api: FakeBotAPI, data_dir: Path) -> AsyncIterator[Running]:
    """Vigil started, once it is done with the menus (they go in the background); no demo
    positions, so no alerts for the shutdown to deliver at their pace."""
    async with running(api, data_dir, sim=QUIET) as r:
        assert r.runtime.menus is not None
        await asyncio.wait_for(r.runtime.menus, 10)
        yield r


@pytest.fixture
async def started(api: FakeBotAPI, data_dir: Path) -> AsyncIterator[FakeBotAPI]:
    async with menus_sent(api, data_dir):
        yield api


async def test_menus_differ_as_the_roles_do(started: FakeBotAPI) -> None:
    api = started
    viewer, trader, admin = seen(api, VIEWER), seen(api, TRADER), seen(api, ADMIN)
    assert seen(api, STRANGER) == ["start", "help"]
    assert viewer == ["start", "help", "status", "positions", "pnl", "lang"]
    assert set(trader) - set(viewer) == {"fix_sl", "close", "close_all", "cancel_all",
                                        "report", "long", "short", "trail", "breakeven", "sl",
                                        "tp"}
    assert set(admin) - set(trader) == {"hold", "resume"}
    assert "hold" not in trader and "fix_sl" not in viewer
    # The same in Russian, for a Russian Telegram app, stranger included.
    assert seen(api, VIEWER, "ru") == viewer and seen(api, STRANGER, "ru") == ["start", "help"]
    assert description(api, ADMIN, "ru", "resume") == "снять HOLD"
    assert description(api, ADMIN, "en", "resume") == "lift HOLD"


async def test_menus_are_sent_again_only_when_the_settings_change(
        api: FakeBotAPI, data_dir: Path) -> None:
    async with menus_sent(api, data_dir):
        pass
    first = len(api.sent("setMyCommands"))
    assert first == 4 * 2  # default + three users, each in the default language and Russian

    async with menus_sent(api, data_dir):
        pass
    assert len(api.sent("setMyCommands")) == first  # nothing changed, nothing sent

    # The viewer is promoted to trader and the trader leaves.
    promoted = Runtime(load_settings(None, data_dir=data_dir, telegram={
        "token": api.token, "api_url": api.base_url, "admins": [ADMIN], "traders": [VIEWER],
        "alert_chats": [ADMIN]}, sim=QUIET))
    await promoted.start()
    assert promoted.menus is not None
    await asyncio.wait_for(promoted.menus, 10)
    await promoted.stop()
    again = api.sent("setMyCommands")[first:]
    assert {c.params["scope"]["chat_id"] for c in again} == {VIEWER}
    assert "fix_sl" in seen(api, VIEWER)
    assert seen(api, TRADER) == ["start", "help"]  # a former user's menu is removed
    assert {c.params["scope"]["chat_id"] for c in api.sent("deleteMyCommands")} == {TRADER}


async def test_a_refused_menu_is_tried_again_at_the_next_start(
        api: FakeBotAPI, data_dir: Path) -> None:
    """A scope Telegram refuses (the default one here, the first sent) does not stop the
    others, and the next start sends that one again, and only that one."""
    api.fail_next("setMyCommands", error_code=400, description="Bad Request: try later")
    async with menus_sent(api, data_dir):
        pass
    [refused] = [c for c in api.sent("setMyCommands") if c.failed]
    assert refused.params["scope"] == {"type": "default"}
    assert seen(api, STRANGER) == [] and "hold" in seen(api, ADMIN)
    before = len(api.sent("setMyCommands"))
    async with menus_sent(api, data_dir):
        pass
    retried = api.sent("setMyCommands")[before:]
    assert len(retried) == 2 and all(c.params["scope"] == {"type": "default"} for c in retried)
    assert seen(api, STRANGER) == ["start", "help"]


async def test_a_429_on_the_menus_holds_up_neither_start_nor_commands(
        api: FakeBotAPI, data_dir: Path) -> None:
    clock = RecordingClock()
    api.fail_next("setMyCommands", error_code=429, description="Too Many Requests",
                  retry_after=30)
    async with running(api, data_dir, telegram_clock=clock, sim=QUIET) as r:
        api.push_message(VIEWER, "/status")
        await api.wait_for("sendMessage", lambda c: c.chat_id == VIEWER and not c.failed)
        await clock.asked(30.0)
        assert r.runtime.menus is not None and not r.runtime.menus.done()
        await clock.advance(30)
        await asyncio.wait_for(r.runtime.menus, 10)
    assert seen(api, STRANGER) == ["start", "help"] and "hold" in seen(api, ADMIN)
