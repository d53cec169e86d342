"""An account that cannot start is reported by name; the other accounts keep running."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bot.conftest import ADMIN, running
from tests.fakes import FakeBotAPI


async def test_account_without_keys_is_halted_and_named_while_paper_runs(
        api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VIGIL_MASTER_KEY", raising=False)
    accounts = [{"name": "paper", "venue": "sim"},
                {"name": "main", "venue": "binanceusdm", "testnet": True}]
    async with running(api, tmp_path / "data", accounts=accounts):
        [alert] = await api.wait_for(
            "sendMessage", lambda c: "[main]" in (c.text or "") and "no API keys" in c.text)
        assert "vigil keys add main" in alert.text
        await api.wait_for("sendMessage", lambda c: "had no stop; placed at" in (c.text or ""))
        api.push_message(ADMIN, "/status")
        [status] = await api.wait_for(
            "sendMessage", lambda c: c.chat_id == ADMIN and "Vigil ·" in (c.text or ""))
        assert "Account main (binanceusdm testnet)" in status.text
        assert "HALTED: start-up check failed: no API keys stored" in status.text
        assert "Account paper (sim)" in status.text
        assert "Positions: 2 · unprotected: 0" in status.text
        api.push_message(ADMIN, "/fix_sl")
        [fix] = await api.wait_for(
            "sendMessage", lambda c: c.chat_id == ADMIN and "Account paper:" in (c.text or ""))
        assert "Account main: 0 positions checked" in fix.text
        assert "not checked: OperatorError: no API keys stored" in fix.text
