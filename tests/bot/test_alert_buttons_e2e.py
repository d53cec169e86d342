"""Alerts you can act on, end to end: real aiogram over real HTTP against the fake Bot API, the
simulated exchange, the outbox in a real SQLite file. The demo's two positions are found on the
venue at start, so every alert chat gets an adoption alert with [Close] [Fix now] [Positions]."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from bot.alert_buttons import AlertCallback, buttons_for
from bot.approvals import ApprovalCallback
from engine.clock import ManualClock
from engine.domain import events as ev
from engine.domain.reports import OrderKind
from engine.domain.values import PositionSide
from engine.outbox import AlertAction, AlertButtons
from engine.sim.exchange import HandApi
from storage.db import Database
from storage.outbox import OutboxRepo
from tests.bot.conftest import PaperRig
from tests.fakes import FakeBotAPI, SentCall
from vigil.runtime import Runtime
from vigil.settings import load_settings

ADMIN, TRADER, VIEWER = 100, 200, 300
BTC = "BTC/USDT:USDT"


Rig = PaperRig


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setattr("bot.notifier.PER_CHAT_INTERVAL", 0.0)  # no pacing between alerts
    async with FakeBotAPI() as api:
        settings = load_settings(None, data_dir=tmp_path / "data", telegram={
            "token": api.token, "api_url": api.base_url, "admins": [ADMIN],
            "traders": [TRADER], "viewers": [VIEWER], "alert_chats": [TRADER, VIEWER]})
        runtime = Runtime(settings, clock=ManualClock())
        await runtime.start()
        try:
            yield Rig(api, runtime)
        finally:
            await runtime.stop()


async def adoption_alert(r: Rig, chat: int, symbol: str = BTC, count: int = 1) -> SentCall:
    """The `count`-th alert to `chat` saying `symbol` was found on the venue."""
    calls = await r.api.wait_for(
        "sendMessage", lambda c: c.chat_id == chat and any(
            f"{symbol}:" in line and "found on the venue" in line
            for line in (c.text or "").splitlines()), count=count)
    return calls[count - 1]


def button(alert: SentCall, action: AlertAction, symbol: str = BTC) -> str:
    """The button for `action` in the keyboard row of `symbol`'s alert (a message may carry
    several alerts, a row each, naming its market)."""
    rows = alert.params["reply_markup"]["inline_keyboard"]
    [row] = rows if len(rows) == 1 else [r for r in rows if r[0]["text"].endswith(symbol)]
    for b in row:
        if AlertCallback.unpack(b["callback_data"]).do is action:
            return str(b["callback_data"])
    raise AssertionError(f"no {action} button on {alert!r}")


def tap(r: Rig, user: int, alert: SentCall, data: str) -> str:
    return r.api.push_callback(user, data, message_id=alert.response["result"]["message_id"],
                               chat_id=alert.chat_id)


async def answer(r: Rig, query_id: str) -> dict[str, Any]:
    [call] = await r.api.wait_for(
        "answerCallbackQuery", lambda c: c.params.get("callback_query_id") == query_id)
    return call.params


def prompts(r: Rig, chat: int) -> list[SentCall]:
    """Approval prompts (Confirm / Cancel) sent to a chat."""
    return [c for c in r.api.sent("sendMessage", chat_id=chat)
            if str((c.params.get("reply_markup") or {}).get("inline_keyboard", [[{}]])[0][0]
                   .get("callback_data", "")).startswith("ap:")]


def market_closes(r: Rig, symbol: str) -> int:
    return sum(1 for o in r.sim.orders.values()
               if o.symbol == symbol and o.kind is OrderKind.MARKET and o.client_id is not None)


async def test_adoption_alert_carries_the_three_buttons_within_64_bytes(rig: Rig) -> None:
    alert = await adoption_alert(rig, TRADER)
    rows = alert.params["reply_markup"]["inline_keyboard"]
    labels = [[b["text"].split(" · ")[0] for b in row] for row in rows]
    assert labels == [["✖️ Close", "🛡 Fix now", "📋 Positions"]] * len(rows)
    assert all(len(b["callback_data"].encode()) <= 64 for row in rows for b in row)
    # The spec is stored with the alert in the outbox.
    outbox = rig.runtime.notifier.outbox  # type: ignore[union-attr]
    stored = await outbox.get(AlertCallback.unpack(button(alert, AlertAction.CLOSE)).row)
    assert stored is not None and stored.chat_id == TRADER and stored.text in (alert.text or "")
    assert stored.buttons is not None
    assert (stored.buttons.account, stored.buttons.symbol) == ("paper", BTC)
    assert stored.buttons.generation is not None


async def test_trader_closes_from_the_alert_once_viewer_is_refused(rig: Rig) -> None:
    trader_alert, viewer_alert = await adoption_alert(rig, TRADER), await adoption_alert(
        rig, VIEWER)
    # A viewer's tap on [Close] (and [Fix now]) is refused like the commands: nothing asked.
    for action in (AlertAction.CLOSE, AlertAction.FIX):
        refused = await answer(rig, tap(rig, VIEWER, viewer_alert, button(viewer_alert, action)))
        assert "needs the trader role" in refused["text"] and refused["show_alert"] is True
    # ... and so is their tap on the very button the trader got (as in a shared group).
    same = await answer(rig, tap(rig, VIEWER, trader_alert,
                                 button(trader_alert, AlertAction.CLOSE)))
    assert "needs the trader role" in same["text"]
    assert prompts(rig, VIEWER) == prompts(rig, TRADER) == [] and BTC in rig.sim.positions

    await answer(rig, tap(rig, TRADER, trader_alert, button(trader_alert, AlertAction.CLOSE)))
    [prompt] = await rig.api.wait_for("sendMessage", lambda c: c in prompts(rig, TRADER))
    assert "BTC/USDT:USDT · LONG 0.05" in prompt.text  # the usual approval summary
    assert BTC in rig.sim.positions  # nothing before the Confirm
    approval = ApprovalCallback.unpack(
        prompt.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]).id
    message_id = prompt.response["result"]["message_id"]
    done = await answer(rig, rig.api.push_callback(
        TRADER, ApprovalCallback(id=approval, yes=True).pack(), message_id=message_id))
    assert done["text"] == "Done."
    await rig.api.wait_for("editMessageText", lambda c: c.params.get("message_id") == message_id
                           and "closed 0.05" in (c.text or ""))
    assert BTC not in rig.sim.positions
    # Tapping [Close] again finds nothing to close: closed exactly once.
    again = await answer(rig, tap(rig, TRADER, trader_alert,
                                  button(trader_alert, AlertAction.CLOSE)))
    assert "No open position on BTC/USDT:USDT" in again["text"]
    assert market_closes(rig, BTC) == 1
    assert len(prompts(rig, TRADER)) == 1


async def test_a_stale_button_never_closes_a_reopened_position(rig: Rig) -> None:
    old = await adoption_alert(rig, TRADER)
    HandApi(rig.sim).close(BTC)
    await rig.runtime.engine.guards["paper"].reconcile_now()  # type: ignore[union-attr]
    HandApi(rig.sim).open(BTC, PositionSide.LONG, D("0.05"))  # the same size: a new position
    await rig.runtime.engine.guards["paper"].reconcile_now()  # type: ignore[union-attr]
    new = await adoption_alert(rig, TRADER, count=2)
    stale = await answer(rig, tap(rig, TRADER, old, button(old, AlertAction.CLOSE)))
    assert "changed since this alert" in stale["text"]
    assert prompts(rig, TRADER) == []
    await answer(rig, tap(rig, TRADER, new, button(new, AlertAction.CLOSE)))
    await rig.api.wait_for("sendMessage", lambda c: c in prompts(rig, TRADER))


async def test_fix_now_and_positions_do_what_the_commands_do(rig: Rig) -> None:
    alert = await adoption_alert(rig, TRADER)
    await answer(rig, tap(rig, TRADER, alert, button(alert, AlertAction.FIX)))
    await rig.api.wait_for("sendMessage", lambda c: c.chat_id == TRADER
                           and "Account paper: 2 positions checked" in (c.text or ""))
    viewer_alert = await adoption_alert(rig, VIEWER)
    await answer(rig, tap(rig, VIEWER, viewer_alert,
                          button(viewer_alert, AlertAction.POSITIONS)))
    [shown] = await rig.api.wait_for("sendMessage", lambda c: c.chat_id == VIEWER
                                     and (c.text or "").startswith("paper · BTC/USDT:USDT"))
    assert "ETH" not in shown.text  # that position only


async def test_forged_or_foreign_button_data_is_refused_and_does_nothing(rig: Rig) -> None:
    trader_alert, viewer_alert = await adoption_alert(rig, TRADER), await adoption_alert(
        rig, VIEWER)
    viewer_row = AlertCallback.unpack(button(viewer_alert, AlertAction.CLOSE)).row
    forged = ["al:999999:c", "al:abc:c", "al:1:z", "al:1", f"al:{viewer_row}:c",
              AlertCallback(row=viewer_row, do=AlertAction.FIX).pack()]
    for data in forged:
        reply = await answer(rig, tap(rig, TRADER, trader_alert, data))
        assert "not valid" in reply["text"], data
        assert reply["show_alert"] is True
    replies = [c for c in rig.api.sent("sendMessage", chat_id=TRADER)
               if not (c.text or "").startswith("[")]  # anything but an alert
    assert replies == []
    assert BTC in rig.sim.positions and market_closes(rig, BTC) == 0


async def test_buttons_survive_in_the_outbox_and_the_newest_spec_wins(db: Database) -> None:
    repo = OutboxRepo(db)
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    first = AlertButtons("paper", BTC, 1, (AlertAction.CLOSE, AlertAction.POSITIONS))
    row = await repo.enqueue(TRADER, "alert", now=now, dedupe_key="k", buttons=first)
    again = await repo.enqueue(TRADER, "alert", now=now, dedupe_key="k",
                               buttons=first.__class__("paper", BTC, 2, first.actions))
    plain = await repo.enqueue(TRADER, "plain", now=now)
    assert again == row
    stored = await repo.get(row)
    assert stored is not None and stored.buttons is not None and stored.count == 2
    assert stored.buttons.generation == 2 and stored.buttons.actions == first.actions
    assert (await repo.get(plain)).buttons is None  # type: ignore[union-attr]


def test_which_events_carry_buttons() -> None:
    adopted = ev.PositionAdopted(account="a", symbol=BTC, side=PositionSide.LONG, qty=D(1),
                                 entry_price=D(1), generation=7)
    sla = ev.SlaBreached(account="a", symbol=BTC, unprotected_seconds=D(5), generation=3)
    refused = ev.StopCannotRest(account="a", symbol=BTC, reason="r", message="m", attempts=3,
                                retry_in_seconds=D(60))
    assert buttons_for(adopted) == AlertButtons("a", BTC, 7, tuple(AlertAction))
    assert buttons_for(sla) == AlertButtons("a", BTC, 3, tuple(AlertAction))
    assert buttons_for(refused) == AlertButtons("a", BTC, None, tuple(AlertAction))
    assert buttons_for(ev.StopMissing(account="a", symbol=BTC, side=PositionSide.LONG,
                                      qty=D(1))) is None
