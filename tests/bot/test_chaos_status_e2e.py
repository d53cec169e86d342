"""/status over real HTTP names the active chaos profile, in English and in Russian."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bot.conftest import ADMIN, VIEWER, running
from tests.fakes import FakeBotAPI, SentCall


async def test_status_shows_the_chaos_profile_in_both_languages(
        api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with running(api, tmp_path / "data", chaos={"profile": "harsh"}):
        api.push_message(ADMIN, "/status")
        [en] = await api.wait_for("sendMessage", lambda c: _to(c, ADMIN, "Vigil ·"))
        assert "🧪 Chaos profile harsh: venue faults injected on purpose" in en.text
        api.push_message(VIEWER, "/status", language_code="ru")
        [ru] = await api.wait_for("sendMessage", lambda c: _to(c, VIEWER, "Vigil ·"))
        assert "🧪 Профиль хаоса harsh: сбои биржи вносятся намеренно" in ru.text


async def test_status_says_nothing_of_chaos_when_it_is_off(
        api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with running(api, tmp_path / "data"):
        api.push_message(ADMIN, "/status")
        [en] = await api.wait_for("sendMessage", lambda c: _to(c, ADMIN, "Vigil ·"))
        assert "Chaos" not in en.text


def _to(call: SentCall, chat: int, contains: str) -> bool:
    return call.chat_id == chat and contains in (call.text or "") and not call.failed
