"""The console chat (no token) shows pictures as PNG files under data_dir/reports: /pnl's chart
and the daily report's, each with the path printed."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from engine.clock import ManualClock
from tests.bot.test_pnl_e2e import InstantClock
from vigil.runtime import Runtime
from vigil.settings import load_settings

PNG = b"\x89PNG\r\n\x1a\n"
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
PICTURE = re.compile(r"^🖼 (/\S+\.png)$", re.MULTILINE)


class Console:
    def __init__(self, stdin: io.StringIO, stdout: io.StringIO, runtime: Runtime) -> None:
        self.stdin, self.stdout, self.runtime = stdin, stdout, runtime

    async def printed(self, text: str, timeout: float = 20.0) -> str:
        """The console's output once it holds `text` (charts are drawn off the loop and alerts
        printed by the notifier's task: there is no one event to wait on)."""
        async with asyncio.timeout(timeout):
            while True:
                out = self.stdout.getvalue()
                if text in out:
                    return out
                await asyncio.sleep(0.05)

    async def picture(self) -> Path:
        [path] = PICTURE.findall(await self.printed("🖼 "))
        return Path(path)


@asynccontextmanager
async def console(data_dir: Path, typed: str, **extra: object) -> AsyncIterator[Console]:
    stdin, stdout = io.StringIO(typed), io.StringIO()
    runtime = Runtime(load_settings(None, data_dir=data_dir, **extra),
                      clock=ManualClock(START), telegram_clock=InstantClock(),
                      stdin=stdin, stdout=stdout)
    await runtime.start()
    try:
        yield Console(stdin, stdout, runtime)
    finally:
        await runtime.stop()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path / "data"


async def test_pnl_at_the_console_saves_the_chart_and_prints_its_path(data_dir: Path) -> None:
    async with console(data_dir, "/pnl\n") as c:
        path = await c.picture()
        out = await c.printed("📊 PnL")
    assert path.parent == (data_dir / "reports").resolve()
    assert path.read_bytes().startswith(PNG)
    caption_line = out.splitlines()[out.splitlines().index(f"🖼 {path}") - 1]
    assert caption_line.startswith("📊 paper: net")


async def test_daily_report_at_the_console_prints_text_and_chart_path(data_dir: Path) -> None:
    daily = time(12, 1)  # UTC: a minute after START
    async with console(data_dir, "", reports={"daily_time": daily.isoformat(),
                                              "timezone": "UTC"}) as c:
        reporter = c.runtime.reporter
        assert reporter is not None and reporter.schedule is not None
        await asyncio.wait_for(reporter.schedule.caught_up.wait(), 15)
        assert isinstance(c.runtime.clock, ManualClock)
        await c.runtime.clock.advance(60)
        path = await c.picture()
        await c.printed("📊 Daily PnL report")
    assert path.read_bytes().startswith(PNG) and path.parent.name == "reports"
