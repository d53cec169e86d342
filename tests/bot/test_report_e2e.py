"""/report over the real bot and the fake Bot API: two CSV documents with the documented headers,
for traders and admins only."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from engine.ops import OPS_CSV_HEADER, POSITIONS_CSV_HEADER
from tests.bot.conftest import ADMIN, TRADER, VIEWER, Running
from tests.bot.test_console_pictures import console
from tests.bot.test_telegram_e2e import to


def rows(data: bytes) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    text = data.decode()
    return tuple(next(csv.reader(io.StringIO(text)))), list(csv.DictReader(io.StringIO(text)))


async def test_report_sends_the_ops_and_positions_csv(vigil: Running) -> None:
    await vigil.api.wait_for("sendMessage", to(ADMIN, "had no stop; placed at"))
    vigil.api.push_message(TRADER, "/report")
    ops_doc, positions_doc = await vigil.api.wait_for(
        "sendDocument", lambda c: c.chat_id == TRADER, count=2)
    assert ops_doc.filenames["document"].startswith("ops_report-")
    assert positions_doc.filenames["document"].startswith("positions-")
    assert "auto_trade ON" in ops_doc.text and "watchdog OK" in ops_doc.text
    assert "Live readiness: ready" in ops_doc.text
    header, [account] = rows(ops_doc.params["document"])
    assert header == OPS_CSV_HEADER
    assert (account["account"], account["positions"], account["unprotected"]) == ("paper", "2", "0")
    header, positions = rows(positions_doc.params["document"])
    assert header == POSITIONS_CSV_HEADER
    assert {p["symbol"] for p in positions} == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert all(p["protected"] == "True" for p in positions)


async def test_report_in_russian_and_under_hold(vigil: Running) -> None:
    await vigil.control.hold("news", "ann")
    vigil.api.push_message(ADMIN, "/report", language_code="ru")
    [doc, _] = await vigil.api.wait_for("sendDocument", lambda c: c.chat_id == ADMIN, count=2)
    assert "Готовность к live: не готов (hold:paper)" in doc.text
    assert "auto_trade OFF" in doc.text


async def test_report_needs_the_trader_role(vigil: Running) -> None:
    vigil.api.push_message(VIEWER, "/report")
    await vigil.api.wait_for("sendMessage", to(VIEWER, "needs the trader role"))
    assert vigil.api.sent("sendDocument", chat_id=VIEWER) == []


async def test_report_at_the_console_prints_the_csv(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with console(tmp_path / "data", "/report\n") as chat:
        out = await chat.printed(",".join(POSITIONS_CSV_HEADER))
    assert ",".join(OPS_CSV_HEADER) in out
    assert "Ops report" in out and "auto_trade ON" in out
