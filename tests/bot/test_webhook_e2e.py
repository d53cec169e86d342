"""Telegram webhook mode end to end: the fake Bot API gets setWebhook with the secret and POSTs
updates to Vigil's ops app over real HTTP, as Telegram does. Polling is not started."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession

from tests.bot.conftest import ADMIN, running
from tests.bot.test_telegram_e2e import to
from tests.fakes import FakeBotAPI
from vigil.settings import load_settings

SECRET = "webhook-SECRET_0123456789"


def free_port() -> int:
    with socket.socket() as s:  # the webhook URL must name the port before Vigil binds it
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def hooked(api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    async with running(api, tmp_path / "data", webhook=(url, SECRET),
                       http={"enabled": True, "port": port}) as r:
        await api.wait_for("setWebhook")
        yield r


async def test_set_webhook_carries_the_secret_and_polling_never_runs(hooked) -> None:
    [call] = hooked.api.sent("setWebhook")
    assert call.params["url"] == hooked.settings.telegram.webhook_url
    assert call.params["secret_token"] == SECRET
    assert "message" in call.params["allowed_updates"]
    assert hooked.api.sent("getUpdates") == []
    # The same app serves the ops endpoints.
    async with ClientSession() as session, session.get(
            f"http://127.0.0.1:{hooked.settings.http.port}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["journal_ok"] is True


async def test_a_wrong_or_missing_secret_is_refused_and_changes_nothing(hooked) -> None:
    api, engine = hooked.api, hooked.runtime.engine
    journal_before = await engine.journal.rows(limit=10_000)
    api.push_message(ADMIN, "/hold hacked")
    assert await api.deliver(secret="webhook-SECRET_0123456788") == [401]
    assert await api.deliver(secret=None) == [401]
    assert await api.deliver(secret="") == [401]
    assert hooked.control.hold_state is None
    journal_after = await engine.journal.rows(limit=10_000)
    assert not [r for r in journal_after[len(journal_before):] if r.kind == "hold_set"]
    assert not [t for t in api.texts(ADMIN) if "HOLD" in t]

    # Telegram retries with the right secret: now the command runs.
    assert await api.deliver() == [200]
    await api.wait_for("sendMessage", to(ADMIN, "HOLD is on: hacked"))
    assert hooked.control.hold_state is not None


async def test_the_bearer_token_does_not_block_telegram(api: FakeBotAPI, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    async with running(api, tmp_path / "data",
                       webhook=(f"http://127.0.0.1:{port}/tg", SECRET),
                       http={"enabled": True, "port": port, "token": "t" * 20}):
        await api.wait_for("setWebhook")
        api.push_message(ADMIN, "/status")
        assert await api.deliver() == [200]
        await api.wait_for("sendMessage", to(ADMIN, "Vigil · paper mode"))


def test_webhook_mode_needs_the_http_app_and_a_secret(tmp_path: Path) -> None:
    from vigil.settings import SettingsError

    tg = {"token": "1:x", "webhook_url": "https://vigil.example.com/tg"}
    with pytest.raises(SettingsError, match="webhook_secret"):
        load_settings(None, telegram=tg, http={"enabled": True})
    with pytest.raises(SettingsError, match=r"http\.enabled"):
        load_settings(None, telegram=tg | {"webhook_secret": SECRET})
    with pytest.raises(SettingsError, match="16 to 256"):
        load_settings(None, telegram=tg | {"webhook_secret": "short"}, http={"enabled": True})
