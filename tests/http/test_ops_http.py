"""The ops HTTP app over real HTTP: each endpoint's shape and status codes."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.ops import OPS_CSV_HEADER, POSITIONS_CSV_HEADER
from engine.sim.exchange import HandApi
from storage.approvals import ApprovalRepo
from storage.outbox import OutboxRepo
from tests.http.conftest import Served

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
DASHBOARD = Path(__file__).resolve().parents[2] / "docker/grafana/dashboards/vigil.json"


async def test_healthz_answers_with_journal_resume_loop_and_ages(served: Served) -> None:
    status, body = await served.json("/healthz")
    assert status == 200
    assert body["ok"] is True and body["journal_ok"] is True and body["resume_ok"] is True
    assert body["mode"] == "paper"
    assert 0 <= body["loop_lag_seconds"] < 1
    [account] = body["accounts"]
    assert account["account"] == "paper" and account["stream_up"] is True
    assert 0 <= account["snapshot_age_seconds"] <= served.engine.settings.guard.interval_seconds
    assert account["stream_age_seconds"] is not None


async def test_readiness_is_ok_when_every_position_is_protected(served: Served) -> None:
    status, body = await served.json("/live-readiness")
    assert (status, body) == (200, {"ok": True, "reasons": []})


async def test_ops_report_json_has_badges_positions_pnl_and_venues(served: Served) -> None:
    status, body = await served.json("/api/ops_report")
    assert status == 200
    assert body["badges"] == {"auto_trade": "ON", "risk_checks": "OFF", "daily_loss": "OK",
                              "watchdog": "OK"}
    assert body["ready"] is True and body["reasons"] == []
    positions = {p["symbol"]: p for p in body["positions"]}
    assert set(positions) == {BTC, ETH}
    assert positions[BTC]["stop_price"] == "63000" and positions[BTC]["protected"] is True
    assert positions[ETH]["protected"] is True  # the demo's missing stop was placed
    assert Decimal(positions[ETH]["qty"]) == Decimal("1.5")  # money as exact strings
    [venue] = body["venues"]
    assert venue["account"] == "paper" and venue["venue"] == "sim" and venue["stream_up"]
    [day] = body["pnl_today"]
    assert day["account"] == "paper" and day["loss_limit"] is None and day["breached"] is False
    Decimal(day["net"]), Decimal(day["unrealized"])  # parseable


async def test_loss_cap_state_and_risk_checks_badge_follow_the_settings(serve) -> None:
    served = await serve(risk={"daily_loss_limit": "250"})
    _, body = await served.json("/api/ops_report")
    assert body["badges"]["risk_checks"] == "ON"
    assert body["pnl_today"][0]["loss_limit"] == "250"


async def test_ops_report_csv_parses_with_the_documented_header(served: Served) -> None:
    status, content_type, text = await served.text("/api/ops_report.csv")
    assert (status, content_type) == (200, "text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(csv.reader(io.StringIO(text)).__next__()) == OPS_CSV_HEADER
    [row] = rows
    assert row["account"] == "paper" and row["watchdog"] == "OK" and row["ready"] == "True"
    assert row["positions"] == "2" and row["unprotected"] == "0"
    Decimal(row["pnl_today_net"]), Decimal(row["unrealized"])


async def test_positions_csv_parses_with_the_documented_header(served: Served) -> None:
    control = served.engine.control

    async def no_pnl(days: int) -> object:
        raise AssertionError(f"the positions CSV read the day's PnL ({days} days)")

    control.pnl = no_pnl  # type: ignore[method-assign]  # the export never needs it
    async with await served.get("/api/positions.csv") as response:
        assert response.status == 200
        assert "positions.csv" in response.headers["Content-Disposition"]
        text = await response.text()
    assert tuple(next(csv.reader(io.StringIO(text)))) == POSITIONS_CSV_HEADER
    rows = {r["symbol"]: r for r in csv.DictReader(io.StringIO(text))}
    assert set(rows) == {BTC, ETH}
    assert rows[BTC]["side"] == "long" and rows[BTC]["protected"] == "True"
    assert Decimal(rows[BTC]["qty"]) == Decimal("0.05")


async def test_metrics_parse_with_prometheus_client_and_carry_the_ops_gauges(
        served: Served) -> None:
    # An alert waiting for Telegram and an approval waiting for a tap, written 90 s ago.
    now = served.clock.now()
    await OutboxRepo(served.engine.db).enqueue(100, "SLA breached", now=now)
    await ApprovalRepo(served.engine.db).create(
        action="cancel_all", args={}, requested_by=100, requested_by_name="ann", chat_id=100,
        lang="en", now=now, expires_at=now + timedelta(seconds=120))
    await served.clock.advance(90)
    status, content_type, text = await served.text("/metrics")
    assert status == 200 and content_type == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("vigil_event_loop_lag_seconds", "vigil_outbox_pending",
                 "vigil_outbox_oldest_age_seconds", "vigil_approvals_pending",
                 "vigil_journal_write_ok", "vigil_journal_commit_seconds",
                 "vigil_stoploss_placed", "vigil_positions_unprotected"):
        assert name in families, name
    value = {s.name: s.value for f in families.values() for s in f.samples if not s.labels}
    assert value["vigil_journal_write_ok"] == 1
    assert value["vigil_outbox_pending"] == 1 and value["vigil_approvals_pending"] == 1
    assert value["vigil_outbox_oldest_age_seconds"] == 90
    assert value["vigil_journal_commit_seconds_count"] >= 1
    placed = [s for s in families["vigil_stoploss_placed"].samples
              if s.name == "vigil_stoploss_placed_total"]
    assert placed and placed[0].labels == {"account": "paper"} and placed[0].value >= 1


async def test_unknown_path_is_404(served: Served) -> None:
    async with await served.get("/api/nope") as response:
        assert response.status == 404


async def test_a_port_in_use_is_a_clear_error(served: Served) -> None:
    from aiohttp import web

    from vigil.http.server import HttpBindError, HttpServer

    taken = HttpServer(web.Application(), host="127.0.0.1", port=served.server.port)
    with pytest.raises(HttpBindError, match=rf"127\.0\.0\.1:{served.server.port}.*http\.port"):
        await taken.start()
    status, _ = await served.json("/healthz")  # the one already serving is unharmed
    assert status == 200


async def test_pnl_today_gauge_parses_and_moves_after_a_closed_trade(served: Served) -> None:
    """`vigil_pnl_today{account}` (the Grafana "PnL today" panel): the day's net PnL, read as
    the ops report reads it; a trade closed on the venue moves it at the next scrape past the
    ledger's 5 s reuse."""

    async def pnl_today() -> float:
        _, _, text = await served.text("/metrics")
        [family] = [f for f in text_string_to_metric_families(text)
                    if f.name == "vigil_pnl_today"]
        [sample] = family.samples
        assert family.type == "gauge" and sample.labels == {"account": "paper"}
        return sample.value

    before = await pnl_today()
    HandApi(served.exchange).close(BTC)
    await served.clock.advance(6)
    after = await pnl_today()
    _, body = await served.json("/api/ops_report")
    assert after != before
    assert Decimal(str(after)) == Decimal(body["pnl_today"][0]["net"])


async def test_every_metric_on_the_grafana_dashboard_is_served(served: Served) -> None:
    """docker/grafana/dashboards/vigil.json asks only for metrics /metrics exports (the PnL
    panel's `vigil_pnl_today` among them)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    asked = {re.sub(r"_(bucket|total)$", "", name)
             for expr in exprs for name in re.findall(r"\bvigil_[a-z_]+", expr)}
    _, _, text = await served.text("/metrics")
    served_names = {f.name for f in text_string_to_metric_families(text)}
    assert "vigil_pnl_today" in asked
    # The request-weight gauges exist once a ccxt account does (tests/venues); this is paper.
    ccxt_only = {"vigil_venue_weight_used", "vigil_venue_weight_limit"}
    assert asked - ccxt_only <= served_names, asked - ccxt_only - served_names
