"""Serve an aiohttp app in Vigil's own loop (started and stopped by vigil/runtime.py)."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from loguru import logger
from prometheus_client import CollectorRegistry

from engine.clock import Clock
from engine.control import ControlService
from engine.ops import OpsReports, ReadinessBounds
from storage.approvals import ApprovalRepo
from storage.db import Database
from storage.journal import Journal
from storage.outbox import OutboxRepo
from vigil.http import HttpBindError
from vigil.http.app import OpsApp, RouteSet, build_app
from vigil.http.health import LoopLag
from vigil.http.metrics import OpsMetrics
from vigil.settings import Settings

SHUTDOWN_TIMEOUT_SECONDS = 2.0
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class HttpServer:
    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port).start()
        except BaseException as exc:
            await runner.cleanup()
            if isinstance(exc, OSError):
                raise HttpBindError(f"http: cannot listen on {self.host}:{self.requested_port}:"
                                    f" {exc.strerror or exc}; change http.host or http.port"
                                    ) from exc
            raise
        self._runner = runner
        logger.info("ops HTTP on http://{}:{}", self.host, self.port)

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose when 0 was asked for)."""
        assert self._runner is not None, "not started"
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def ops_server(settings: Settings, *, control: ControlService, reports: OpsReports,
               journal: Journal, registry: CollectorRegistry, db: Database, clock: Clock,
               extra: Sequence[RouteSet] = (), loop: LoopLag | None = None) -> HttpServer:
    """The ops app on `[http]` host and port, over the engine's own parts."""
    h = settings.http
    if h.token is None and h.host not in LOOPBACK:
        logger.warning("ops HTTP binds {} without a token: anyone who can reach it reads "
                       "positions and PnL; set http.token", h.host)
    loop = loop or LoopLag()
    metrics = OpsMetrics(engine_registry=registry, journal=journal, outbox=OutboxRepo(db),
                         approvals=ApprovalRepo(db), loop=loop, clock=clock, reports=reports)
    ops = OpsApp(control=control, reports=reports, journal=journal, loop=loop, metrics=metrics,
                 loop_stall_seconds=h.loop_stall_seconds)
    app = build_app(ops, token=h.token.get_secret_value() if h.token else None, extra=extra)
    return HttpServer(app, host=h.host, port=h.port)


def ops_reports(settings: Settings, control: ControlService, clock: Clock) -> OpsReports:
    h = settings.http
    return OpsReports(control, loss_limit=settings.risk.daily_loss_limit, clock=clock,
                      bounds=ReadinessBounds(sla_seconds=settings.guard.sla_seconds,
                                             stream_down_seconds=h.stream_down_seconds,
                                             snapshot_stale_seconds=h.snapshot_stale_seconds))
