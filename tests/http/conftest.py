"""A paper engine on a manual clock, its ops HTTP app served on 127.0.0.1 (port 0) and asked
over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession

from engine.clock import ManualClock
from engine.ops import OpsReports
from engine.sim.exchange import SimExchange
from engine.sim.venue import SimVenue
from vigil.http.app import OPS, OpsApp
from vigil.http.health import LoopLag
from vigil.http.server import HttpServer, ops_reports, ops_server
from vigil.runtime import Engine
from vigil.settings import Settings, load_settings

TOKEN = "s3cret-token-0123456789"


@dataclass
class Served:
    engine: Engine
    clock: ManualClock
    server: HttpServer
    session: ClientSession
    reports: OpsReports
    token: str | None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def ops(self) -> OpsApp:
        return self.server.app[OPS]

    @property
    def exchange(self) -> SimExchange:
        return self.engine.sims["paper"]

    @property
    def venue(self) -> SimVenue:
        venue = self.engine.venues["paper"]
        assert isinstance(venue, SimVenue)
        return venue

    async def get(self, path: str, *, token: str | None = None, **kw: Any) -> ClientResponse:
        headers = {"Authorization": f"Bearer {token or self.token}"} if (token or self.token) \
            else {}
        return await self.session.get(self.base + path, headers=headers, **kw)

    async def json(self, path: str) -> tuple[int, dict[str, Any]]:
        async with await self.get(path) as response:
            return response.status, await response.json()

    async def text(self, path: str) -> tuple[int, str, str]:
        async with await self.get(path) as response:
            return response.status, response.content_type, await response.text()


async def until(condition: Callable[[], bool], what: str, *,
                clock: ManualClock | None = None, step: float = 0.1) -> None:
    """Let the loop (and SQLite's thread) run until the engine got there: journal writes are
    real I/O that `ManualClock.advance` does not wait for. With `clock`, time also moves on
    (`step` seconds every tenth look), for work that waits on it (a pass, a retry)."""
    for i in range(400):
        if condition():
            return
        await asyncio.sleep(0.005)
        if clock is not None and i % 10 == 9:
            await clock.advance(step)
    raise AssertionError(f"timed out waiting for {what}")


def settled(engine: Engine) -> bool:
    """Every account has seen its venue, and every position rests under its stop."""
    status, positions = engine.control.status(), engine.control.positions()
    return (all(a.last_reconcile is not None for a in status.accounts)
            and status.unprotected == 0
            and all(p.stop_price is not None and p.unprotected_seconds == 0
                    for p in positions))


def http_settings(data_dir: Path, **extra: Any) -> Settings:
    http = {"enabled": True, "port": 0, **extra.pop("http", {})}
    return load_settings(None, data_dir=data_dir, http=http, **extra)


@pytest.fixture
async def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no stray .env

    async def start(loop: LoopLag | None = None, **extra: Any) -> Served:
        settings = http_settings(tmp_path / "data", **extra)
        clock = ManualClock()
        engine = await Engine.build(settings, clock)
        await engine.start()
        reports = ops_reports(settings, engine.control, clock)
        server = ops_server(settings, control=engine.control, reports=reports,
                            journal=engine.journal, registry=engine.metrics.registry,
                            db=engine.db, clock=clock, loop=loop)
        await server.start()
        token = settings.http.token.get_secret_value() if settings.http.token else None
        served = Served(engine, clock, server, ClientSession(), reports, token)
        started.append(served)
        await until(lambda: settled(engine), "the first pass to protect every position",
                    clock=clock)
        return served

    started: list[Served] = []
    yield start
    for s in started:
        await s.session.close()
        await s.server.stop()
        await s.engine.stop()
        await s.engine.close()


@pytest.fixture
async def served(serve) -> AsyncIterator[Served]:
    yield await serve()
