"""A running Vigil (paper mode, real aiogram polling) against the fake Bot API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.clock import Clock
from engine.protection.guard import AccountGuard
from engine.sim.exchange import SimExchange
from tests.fakes import FakeBotAPI
from vigil.runtime import Runtime
from vigil.settings import Settings, load_settings

ADMIN, TRADER, VIEWER, STRANGER = 100, 200, 300, 999


@dataclass
class Running:
    api: FakeBotAPI
    runtime: Runtime
    settings: Settings

    @property
    def control(self):
        assert self.runtime.engine is not None
        return self.runtime.engine.control


@dataclass
class PaperRig:
    """A running Vigil on the paper account, with its simulated exchange and guard at hand."""

    api: FakeBotAPI
    runtime: Runtime

    @property
    def sim(self) -> SimExchange:
        assert self.runtime.engine is not None
        return self.runtime.engine.sims["paper"]

    @property
    def guard(self) -> AccountGuard:
        assert self.runtime.engine is not None
        return self.runtime.engine.guards["paper"]


def telegram_settings(api: FakeBotAPI, data_dir: Path, *,
                      webhook: tuple[str, str] | None = None, **extra: object) -> Settings:
    """`webhook`: (url, secret) for webhook mode; polling without it."""
    hook = {"webhook_url": webhook[0], "webhook_secret": webhook[1]} if webhook else {}
    return load_settings(None, data_dir=data_dir, telegram={
        "token": api.token, "api_url": api.base_url, "admins": [ADMIN], "traders": [TRADER],
        "viewers": [VIEWER], "alert_chats": [ADMIN], **hook}, **extra)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


@asynccontextmanager
async def running(api: FakeBotAPI, data_dir: Path, clock: Clock | None = None,
                  telegram_clock: Clock | None = None, **extra: object
                  ) -> AsyncIterator[Running]:
    settings = telegram_settings(api, data_dir, **extra)
    runtime = Runtime(settings, clock=clock, telegram_clock=telegram_clock)
    await runtime.start()
    try:
        yield Running(api, runtime, settings)
    finally:
        await runtime.stop()


@pytest.fixture
async def vigil(api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[Running]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    async with running(api, tmp_path / "data") as r:
        yield r
