"""A Russian-speaking user gets Russian; /lang switches and is remembered."""

from __future__ import annotations

from tests.bot.conftest import ADMIN, TRADER, Running


async def test_russian_user_gets_russian_and_lang_switches(vigil: Running) -> None:
    api = vigil.api
    api.push_message(TRADER, "/help", language_code="ru")
    [reply] = await api.wait_for("sendMessage", lambda c: c.chat_id == TRADER)
    assert "Команды для вашей роли (трейдер):" in reply.text
    assert "/close SYMBOL — закрыть одну позицию" in reply.text

    api.push_message(TRADER, "/lang en", language_code="ru")
    await api.wait_for("sendMessage", lambda c: c.text == "Language set: English.")
    api.push_message(TRADER, "/positions", language_code="ru")
    [positions] = await api.wait_for(
        "sendMessage", lambda c: c.chat_id == TRADER and "mark" in (c.text or ""))
    assert "PnL" in positions.text and "марк" not in positions.text
    assert await vigil.runtime.engine.state.get("lang", str(TRADER)) == "en"

    api.push_message(TRADER, "/lang ru")
    await api.wait_for("sendMessage", lambda c: c.text == "Язык: русский.")
    api.push_message(TRADER, "/lang de")
    await api.wait_for("sendMessage", lambda c: c.text == "Использование: /lang en|ru")


async def test_alerts_reach_a_russian_speaking_admin_in_russian(vigil: Running) -> None:
    api = vigil.api
    api.push_message(ADMIN, "/hold новости", language_code="ru")
    await api.wait_for("sendMessage", lambda c: (c.text or "").startswith("⏸ HOLD включён"))
    [alert] = await api.wait_for("sendMessage", lambda c: "[paper] ⏸ HOLD (" in (c.text or ""))
    assert "Защита продолжает работать" in alert.text
