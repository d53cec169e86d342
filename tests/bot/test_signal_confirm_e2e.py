"""Large webhook signals wait for an admin's Confirm in Telegram: real HTTP into Vigil's app,
real aiogram against the fake Bot API, the simulated exchange, approvals in SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.clock import ManualClock
from engine.domain.reports import OrderKind
from tests.bot.conftest import ADMIN, TRADER, Running, running
from tests.bot.test_approvals_e2e import advance_until, answer, edited, sim, tap
from tests.bot.test_webhook_e2e import free_port
from tests.fakes import FakeBotAPI
from vigil.signals_http import TOKEN

SECRET = "s3cret-s3cret-s3cret"
BTC = "BTC/USDT:USDT"
BIG = {"symbol": "BTCUSDT", "side": "buy", "size": "$2000", "sl": "2%"}  # over 1000


@pytest.fixture
async def signals(api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[Running, ManualClock, str]]:
    monkeypatch.chdir(tmp_path)
    port, clock = free_port(), ManualClock()
    async with running(api, tmp_path / "data", clock=clock, sim={"demo_positions": False},
                       http={"enabled": True, "port": port},
                       signals={"sources": {"tv": {"secret": SECRET}},
                                "confirm_notional": "1000"}) as r:
        yield r, clock, f"http://127.0.0.1:{port}/signal/tv"


async def post(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(
            url, json=payload, headers={TOKEN: SECRET}) as response:
        return response.status, await response.json()


def entries(r: Running) -> list[object]:
    return [o for o in sim(r).orders.values() if o.kind is OrderKind.MARKET and o.client_id]


async def prompt_for(r: Running, approval: str) -> int:
    """The admin's Confirm message for this approval: its message id."""
    calls = await r.api.wait_for("sendMessage", lambda c: approval in str(
        c.params.get("reply_markup")))
    assert calls[-1].params["chat_id"] == ADMIN
    return int(calls[-1].response["result"]["message_id"])


async def test_a_large_signal_waits_for_an_admins_confirm_then_opens_once(
        signals: tuple[Running, ManualClock, str]) -> None:
    r, _, url = signals
    status, body = await post(url, {**BIG, "id": "big-1"})
    assert (status, body["status"]) == (202, "pending_confirm"), body
    assert body["qty"] == "0.030" and sim(r).orders == {}  # nothing sent yet
    message = await prompt_for(r, body["approval"])
    text = r.api.messages[message]["text"]
    assert "Signal from webhook tv: an admin must confirm it." in text
    assert "market order for 0.03" in text
    # the same alert again: the same approval, still nothing sent
    again_status, again = await post(url, {**BIG, "id": "big-1"})
    assert (again_status, again["approval"]) == (202, body["approval"])
    # a trader may not confirm it; an admin does
    refused = await answer(r, tap(r, TRADER, body["approval"], message))
    assert "admin" in refused.params["text"] and sim(r).orders == {}
    await answer(r, tap(r, ADMIN, body["approval"], message))
    await edited(r, message, "opened; stop 63700")
    assert sim(r).positions[BTC].qty == D("0.030") and len(entries(r)) == 1
    # the sender retries once more: it gets the entry's result, never a second order
    status, done = await post(url, {**BIG, "id": "big-1"})
    assert (status, done["status"], done["replayed"]) == (200, "protected", True)
    assert len(entries(r)) == 1


async def test_a_small_signal_goes_straight_through(
        signals: tuple[Running, ManualClock, str]) -> None:
    r, _, url = signals
    status, body = await post(url, {**BIG, "size": "$500", "id": "small-1"})
    assert (status, body["status"]) == (200, "protected"), body
    assert not [c for c in r.api.sent("sendMessage") if c.params.get("reply_markup")]
    # The sender retries it (its position is open now): the earlier result, not a refusal.
    status, again = await post(url, {**BIG, "size": "$500", "id": "small-1"})
    assert (status, again["status"], again["replayed"]) == (200, "protected", True), again
    assert len(entries(r)) == 1


async def test_cancel_or_expiry_sends_nothing(
        signals: tuple[Running, ManualClock, str]) -> None:
    r, clock, url = signals
    _, cancelled = await post(url, {**BIG, "id": "big-2"})
    message = await prompt_for(r, cancelled["approval"])
    await answer(r, tap(r, ADMIN, cancelled["approval"], message, yes=False))
    await edited(r, message, "nothing was done")
    assert await post(url, {**BIG, "id": "big-2"}) == (409, {
        "ok": False, "error": "not_confirmed", "detail": "cancelled",
        "approval": cancelled["approval"], "key": "tv:big-2"})
    _, expiring = await post(url, {**BIG, "id": "big-3"})
    message = await prompt_for(r, expiring["approval"])
    await advance_until(r, clock, lambda c: c.params.get("message_id") == message
                        and "Expired" in (c.text or ""), 121)
    status, body = await post(url, {**BIG, "id": "big-3"})
    assert (status, body["detail"]) == (409, "expired")
    assert sim(r).orders == {} and sim(r).positions == {}
