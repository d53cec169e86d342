"""The real bot over real HTTP against the fake Bot API server: access, roles, commands."""

from __future__ import annotations

from tests.bot.conftest import ADMIN, STRANGER, TRADER, VIEWER, Running
from tests.fakes import SentCall


def to(chat: int, contains: str = ""):
    def match(call: SentCall) -> bool:
        return call.chat_id == chat and contains in (call.text or "") and not call.failed
    return match


async def test_status_from_admin_is_answered(vigil: Running) -> None:
    vigil.api.push_message(ADMIN, "/status")
    [reply] = await vigil.api.wait_for("sendMessage", to(ADMIN, "Vigil · paper mode"))
    assert "Account paper (sim)" in reply.text
    assert "Positions: 2" in reply.text


async def test_stranger_gets_nothing_and_changes_nothing(vigil: Running) -> None:
    journal_before = await vigil.runtime.engine.journal.rows(limit=10_000)
    vigil.api.push_message(STRANGER, "/hold hacked")
    vigil.api.push_message(STRANGER, "/status")
    # Admins hear about the stranger once, with the id to add.
    [alert] = await vigil.api.wait_for("sendMessage", to(ADMIN, f"id {STRANGER}"))
    assert "ignored" in alert.text
    # A later command from the admin is answered, so the stranger's updates were processed.
    vigil.api.push_message(ADMIN, "/status")
    await vigil.api.wait_for("sendMessage", to(ADMIN, "Vigil · paper mode"))
    assert vigil.api.sent("sendMessage", chat_id=STRANGER) == []
    assert vigil.control.hold_state is None
    journal_after = await vigil.runtime.engine.journal.rows(limit=10_000)
    assert not [r for r in journal_after[len(journal_before):] if r.kind == "hold_set"]
    assert len([c for c in vigil.api.sent("sendMessage", chat_id=ADMIN)
                if f"id {STRANGER}" in (c.text or "")]) == 1


async def test_hold_from_viewer_is_refused(vigil: Running) -> None:
    vigil.api.push_message(VIEWER, "/hold because")
    [reply] = await vigil.api.wait_for("sendMessage", to(VIEWER))
    assert "needs the admin role" in reply.text
    assert vigil.control.hold_state is None


async def test_hold_and_resume_by_admin_persist(vigil: Running) -> None:
    vigil.api.push_message(ADMIN, "/hold news at 14:00")
    await vigil.api.wait_for("sendMessage", to(ADMIN, "HOLD is on: news at 14:00"))
    assert vigil.control.hold_state is not None
    assert await vigil.runtime.engine.state.get("hold", "paper") is not None
    vigil.api.push_message(ADMIN, "/status")
    await vigil.api.wait_for("sendMessage", to(ADMIN, "HOLD: news at 14:00"))
    vigil.api.push_message(ADMIN, "/resume")
    await vigil.api.wait_for("sendMessage", to(ADMIN, "HOLD lifted"))
    assert vigil.control.hold_state is None


async def test_help_lists_only_what_the_role_may_run(vigil: Running) -> None:
    vigil.api.push_message(VIEWER, "/help")
    [viewer_help] = await vigil.api.wait_for("sendMessage", to(VIEWER, "Commands"))
    vigil.api.push_message(ADMIN, "/help")
    [admin_help] = await vigil.api.wait_for("sendMessage", to(ADMIN, "Commands"))
    assert "/positions" in viewer_help.text and "/hold" not in viewer_help.text
    assert "/fix_sl" not in viewer_help.text
    assert "/hold" in admin_help.text and "/fix_sl" in admin_help.text


async def test_positions_lists_demo_positions_and_the_missing_stop_gets_fixed(
        vigil: Running) -> None:
    # The demo position without a stop is protected within seconds, with an alert.
    [alert] = await vigil.api.wait_for("sendMessage", to(ADMIN, "had no stop; placed at"))
    assert "ETH/USDT:USDT" in alert.text
    vigil.api.push_message(TRADER, "/positions")
    [reply] = await vigil.api.wait_for("sendMessage", to(TRADER, "BTC/USDT:USDT"))
    assert "ETH/USDT:USDT · SHORT 1.5" in reply.text
    assert "NO STOP" not in reply.text


async def test_fix_sl_usage_and_unknown_symbol(vigil: Running) -> None:
    vigil.api.push_message(TRADER, "/fix_sl A B")
    await vigil.api.wait_for("sendMessage", to(TRADER, "Usage: /fix_sl"))
    vigil.api.push_message(TRADER, "/fix_sl NOPE")
    await vigil.api.wait_for("sendMessage", to(TRADER, "Unknown symbol"))
    vigil.api.push_message(TRADER, "/fix_sl ethusdt")
    await vigil.api.wait_for("sendMessage", to(TRADER, "Account paper"))
    vigil.api.push_message(VIEWER, "/fix_sl")
    await vigil.api.wait_for("sendMessage", to(VIEWER, "needs the trader role"))


async def test_unknown_command_points_to_help(vigil: Running) -> None:
    vigil.api.push_message(ADMIN, "/frobnicate")
    await vigil.api.wait_for("sendMessage", to(ADMIN, "Unknown command"))
