"""/positions for a big book, end to end: real aiogram over real HTTP against the fake Bot API,
120 positions on the simulated exchange (5 of them without a stop: opened while the account was
on HALT, when nothing is sent to the venue)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from bot.positions_view import PAGE_SIZE, Only, PositionFilter, PositionsPage
from engine.clock import ManualClock
from engine.domain.values import PositionSide
from engine.sim.exchange import HandApi
from tests.bot.conftest import PaperRig
from tests.fakes import FakeBotAPI, SentCall
from vigil.runtime import Runtime
from vigil.settings import load_settings

ADMIN, VIEWER, STRANGER = 100, 300, 999
BOOK, BARE = 120, 5  # positions, of which without a stop
ROW = re.compile(r"^paper · (S\d{4}/USDT:USDT) · ", re.M)


def market(i: int) -> str:
    return f"S{i:04d}/USDT:USDT"


Rig = PaperRig


async def open_book(rig: Rig, n: int, bare: int) -> None:
    """n positions, the last `bare` of them opened during a HALT (so without a stop)."""
    hand = HandApi(rig.sim)
    for i in range(n):
        rig.sim.add_market(market(i), D(100 + i), D("0.01"), D("0.1"), D("0.1"))
    for i in range(n - bare):
        hand.open(market(i), PositionSide.LONG if i % 3 else PositionSide.SHORT, D(1 + i % 7))
    await rig.guard.reconcile_now()
    await rig.guard.halt("test: nothing goes to the venue")
    for i in range(n - bare, n):
        hand.open(market(i), PositionSide.LONG, D(2))
    await rig.guard.reconcile_now()


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    async with FakeBotAPI() as api:
        settings = load_settings(None, data_dir=tmp_path / "data", sim={"demo_positions": False},
                                 telegram={"token": api.token, "api_url": api.base_url,
                                           "admins": [ADMIN], "viewers": [VIEWER]})
        runtime = Runtime(settings, clock=ManualClock())  # prices stand still: pages compare
        await runtime.start()
        try:
            r = Rig(api, runtime)
            await open_book(r, BOOK, BARE)
            yield r
        finally:
            await runtime.stop()


async def ask(rig: Rig, text: str, user: int = VIEWER) -> SentCall:
    before = len(rig.api.sent("sendMessage", chat_id=user))
    rig.api.push_message(user, text)
    calls = await rig.api.wait_for("sendMessage", lambda c: c.chat_id == user,
                                   count=before + 1)
    return calls[-1]


def buttons(markup: dict[str, Any] | None) -> dict[str, str]:
    """Label -> callback data."""
    row = (markup or {}).get("inline_keyboard", [[]])[0]
    return {b["text"]: b["callback_data"] for b in row}


async def turn(rig: Rig, message_id: int, data: str, user: int = VIEWER) -> dict[str, Any]:
    """Tap a page button; return the message as it is once the tap was answered."""
    query = rig.api.push_callback(user, data, message_id=message_id)
    await rig.api.wait_for("answerCallbackQuery",
                           lambda c: c.params.get("callback_query_id") == query)
    return rig.api.messages[message_id]


async def test_summary_first_then_pages_turned_in_place(rig: Rig) -> None:
    first = await ask(rig, "/positions")
    text, message_id = first.text or "", first.response["result"]["message_id"]
    head = text.split("\n\n")[0].splitlines()
    assert head[0] == f"Positions: {BOOK} · unprotected: {BARE}"
    assert head[1].startswith("Long: ") and " · short: " in head[1]
    assert head[2].startswith("⚠️ Without a stop: S0115/USDT:USDT (")
    assert head[3].startswith("Largest PnL: ")
    rows = ROW.findall(text)
    assert len(rows) == PAGE_SIZE
    assert rows[:BARE] == [market(i) for i in range(BOOK - BARE, BOOK)]  # unprotected first
    assert text.count("NO STOP") == BARE
    assert "Page 1 of 6 · as of" in text
    assert set(buttons(first.params.get("reply_markup"))) == {"Next ▶️"}
    assert len(rig.api.sent("sendMessage", chat_id=VIEWER)) == 1  # one message, not 120 rows

    seen = list(rows)
    message = rig.api.messages[message_id]
    for number in range(2, 7):
        message = await turn(rig, message_id, buttons(message.get("reply_markup"))["Next ▶️"])
        assert f"Page {number} of 6" in message["text"]
        seen += ROW.findall(message["text"])
    assert set(buttons(message.get("reply_markup"))) == {"◀️ Prev"}  # the last page
    assert sorted(seen) == sorted(market(i) for i in range(BOOK))  # each position once
    back = await turn(rig, message_id, buttons(message.get("reply_markup"))["◀️ Prev"])
    assert "Page 5 of 6" in back["text"]
    assert set(buttons(back.get("reply_markup"))) == {"◀️ Prev", "Next ▶️"}
    # Every turn edited the one message; nothing new was sent.
    assert len(rig.api.sent("sendMessage", chat_id=VIEWER)) == 1
    assert len(rig.api.sent("editMessageText")) == 6


async def test_filters_and_bad_filters(rig: Rig) -> None:
    bare = await ask(rig, "/positions unprotected")
    assert ROW.findall(bare.text or "") == [market(i) for i in range(BOOK - BARE, BOOK)]
    assert (bare.text or "").startswith(f"Positions: {BARE} · unprotected: {BARE}")
    assert bare.params.get("reply_markup") is None  # one page: no buttons
    one = await ask(rig, "/positions s0007usdt")
    assert ROW.findall(one.text or "") == [market(7)]
    assert "NO STOP" not in (one.text or "")
    flat = await ask(rig, "/positions BTCUSDT")  # listed, but no position
    assert flat.text == "No open position on BTC/USDT:USDT now."
    for bad in ("/positions NOPE/USDT:USDT", "/positions ETH BTC"):
        reply = await ask(rig, bad)
        assert "Usage: /positions [SYMBOL|unprotected]" in (reply.text or ""), bad
    unknown = await ask(rig, "/positions NOPE/USDT:USDT")
    assert (unknown.text or "").startswith("Unknown symbol NOPE/USDT:USDT")


async def test_a_stale_page_shows_the_book_as_it_is_now(rig: Rig) -> None:
    first = await ask(rig, "/positions")
    message_id = first.response["result"]["message_id"]
    message = rig.api.messages[message_id]
    for _ in range(4):  # to page 5 of 6
        message = await turn(rig, message_id, buttons(message.get("reply_markup"))["Next ▶️"])
    stale_next = buttons(message.get("reply_markup"))["Next ▶️"]  # to page 6 of 6
    hand = HandApi(rig.sim)
    for i in range(60):  # half the book closes: 3 pages left
        hand.close(market(i))
    await rig.guard.reconcile_now()
    now = await turn(rig, message_id, stale_next)
    assert "Page 3 of 3" in now["text"]  # the last page there is, not an error
    assert now["text"].startswith(f"Positions: {BOOK - 60} · unprotected: {BARE}")
    assert set(buttons(now.get("reply_markup"))) == {"◀️ Prev"}
    assert not set(ROW.findall(now["text"])) & {market(i) for i in range(60)}
    # A tap on an old button once everything is flat: the page says so, the buttons go.
    for i in range(60, BOOK):
        hand.close(market(i))
    await rig.guard.reconcile_now()
    gone = await turn(rig, message_id, stale_next)
    assert gone["text"] == "No open positions." and "reply_markup" not in gone


async def test_page_buttons_are_checked_like_the_command(rig: Rig) -> None:
    first = await ask(rig, "/positions")
    message_id = first.response["result"]["message_id"]
    rig.api.push_callback(STRANGER, PositionsPage.of(1, PositionFilter()).pack(),
                          message_id=message_id)
    for forged in ("pg:x:a", "pg:1:z", PositionsPage.of(1, PositionFilter(
            Only.SYMBOL, "NOPE/USDT:USDT")).pack()):
        query = rig.api.push_callback(VIEWER, forged, message_id=message_id)
        [answer] = await rig.api.wait_for(
            "answerCallbackQuery", lambda c, q=query: c.params.get("callback_query_id") == q)
        assert "not valid" in answer.params["text"], forged
    assert rig.api.sent("editMessageText") == []  # the stranger's tap did nothing either
    # An out-of-range page (forged or stale) shows the nearest page there is.
    last = await turn(rig, message_id, PositionsPage.of(99, PositionFilter()).pack())
    assert "Page 6 of 6" in last["text"]
    # The same page again with nothing changed: Telegram says "not modified"; still answered.
    await turn(rig, message_id, PositionsPage.of(5, PositionFilter()).pack())
    assert [c.failed for c in rig.api.sent("editMessageText")] == [False, True]
