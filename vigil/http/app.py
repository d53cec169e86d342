"""The ops HTTP app: health, readiness, Prometheus metrics, ops reports; more route sets (the
Telegram webhook, a signal webhook) plug in through `extra`. Endpoints: docs/HTTP.md."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.control import ControlService
from engine.ops import OpsReports, ops_csv, report_dict, venue_health
from storage.journal import Journal
from vigil.http.health import LoopLag
from vigil.http.metrics import OpsMetrics

HEALTH_FIELDS = ("account", "venue", "streams", "stream_up", "stream_age_seconds",
                 "snapshot_age_seconds")
RouteSet = Callable[[web.Application], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths served without the bearer token: Docker's HEALTHCHECK, and route sets that carry their
# own proof (the Telegram webhook's secret header). A route set adds its paths here.
PUBLIC_PATHS: web.AppKey[set[str]] = web.AppKey("public_paths", set)


@dataclass
class OpsApp:
    control: ControlService
    reports: OpsReports
    journal: Journal
    loop: LoopLag
    metrics: OpsMetrics
    loop_stall_seconds: float


OPS: web.AppKey[OpsApp] = web.AppKey("ops", OpsApp)


def build_app(ops: OpsApp, *, token: str | None = None,
              extra: Sequence[RouteSet] = ()) -> web.Application:
    app = web.Application(middlewares=[_bearer(token)] if token else [])
    app[OPS] = ops
    app[PUBLIC_PATHS] = {"/healthz"}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/live-readiness", live_readiness)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/ops_report", ops_report)
    app.router.add_get("/api/ops_report.csv", ops_report_csv)
    app.router.add_get("/api/positions.csv", ops_positions_csv)
    app.cleanup_ctx.append(_loop_monitor)
    for add_routes in extra:
        add_routes(app)
    return app


async def _loop_monitor(app: web.Application) -> AsyncIterator[None]:
    ops = app[OPS]
    ops.loop.start()
    yield
    await ops.loop.stop()
    ops.metrics.detach()


def _bearer(token: str) -> Any:
    expected = token.encode()

    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in request.app[PUBLIC_PATHS]:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # Constant-time: how much of a guess matched must not show in the timing.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                     expected):
                return _json({"error": "a valid 'Authorization: Bearer <token>' is required"},
                             401, headers={"WWW-Authenticate": 'Bearer realm="vigil"'})
        return await handler(request)

    return bearer


def _json(body: dict[str, Any], status: int = 200, **kwargs: Any) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, indent=1),
                             **kwargs)


def _csv(text: str, filename: str) -> web.Response:
    return web.Response(text=text, content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


async def healthz(request: web.Request) -> web.Response:
    """Alive: 503 when the journal cannot be written or the event loop stalls."""
    ops = request.app[OPS]
    status = ops.control.status()
    now = ops.control.clock.now()
    lag = ops.loop.seconds
    journal_ok = ops.journal.write_error is None
    accounts = [{k: getattr(v, k) for k in HEALTH_FIELDS}
                for v in (venue_health(a, now) for a in status.accounts)]
    ok = journal_ok and lag <= ops.loop_stall_seconds
    return _json({
        "ok": ok, "mode": status.mode, "journal_ok": journal_ok,
        "journal_error": ops.journal.write_error,
        # every account has loaded its journal state and seen the venue since start
        "resume_ok": all(a.last_reconcile is not None for a in status.accounts),
        "loop_lag_seconds": round(lag, 4), "accounts": accounts}, 200 if ok else 503)


async def live_readiness(request: web.Request) -> web.Response:
    ready = request.app[OPS].reports.readiness()
    return _json({"ok": ready.ok, "reasons": list(ready.reasons)}, 200 if ready.ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[OPS].metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def ops_report(request: web.Request) -> web.Response:
    return _json(report_dict(await request.app[OPS].reports.report()))


async def ops_report_csv(request: web.Request) -> web.Response:
    return _csv(ops_csv(await request.app[OPS].reports.report()), "ops_report.csv")


async def ops_positions_csv(request: web.Request) -> web.Response:
    return _csv(request.app[OPS].reports.positions_csv(), "positions.csv")
