"""/live-readiness and /healthz flip to 503 and back over real HTTP; the bearer token."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.domain import events as ev
from engine.domain.reports import StreamStatus
from engine.domain.values import PositionSide
from engine.results import HoldKind
from engine.sim.exchange import HandApi
from engine.sim.venue import FaultPlan
from storage.journal import JournalWriteError
from tests.http.conftest import TOKEN, Served, until
from vigil.http.health import LoopLag

SOL = "SOL/USDT:USDT"


async def readiness(served: Served) -> tuple[int, list[str]]:
    status, body = await served.json("/live-readiness")
    assert set(body) == {"ok", "reasons"} and body["ok"] is (status == 200)
    return status, body["reasons"]


async def test_hold_makes_readiness_503_and_resume_makes_it_200(served: Served) -> None:
    control = served.engine.control
    await control.hold("news at 14:00", "ann")
    assert await readiness(served) == (503, ["hold:paper"])
    _, body = await served.json("/api/ops_report")
    assert body["badges"]["auto_trade"] == "OFF"
    await control.resume("ann")
    assert await readiness(served) == (200, [])


async def test_a_halted_account_is_not_ready_and_the_watchdog_says_auto_hold(
        served: Served) -> None:
    await served.engine.guards["paper"].halt("operator error: bad keys")
    assert await readiness(served) == (503, ["halt:paper"])
    _, body = await served.json("/api/ops_report")
    assert body["badges"]["watchdog"] == "AUTO_HOLD"
    await served.engine.control.resume("ann")
    assert await readiness(served) == (200, [])


async def test_the_loss_cap_hold_is_a_daily_loss_breach(served: Served) -> None:
    control = served.engine.control
    await control.hold("daily loss limit 100 reached", "risk", kind=HoldKind.LOSS_CAP)
    assert await readiness(served) == (503, ["daily_loss:paper"])
    _, body = await served.json("/api/ops_report")
    assert body["badges"] == {"auto_trade": "OFF", "risk_checks": "OFF",
                              "daily_loss": "BREACH", "watchdog": "AUTO_HOLD"}
    assert body["pnl_today"][0]["breached"] is True
    await control.resume("ann")
    assert await readiness(served) == (200, [])


async def test_a_failing_venue_is_a_reason_until_a_snapshot_succeeds(served: Served) -> None:
    served.venue.faults = FaultPlan(transient=1.0)  # every REST read fails
    await until(lambda: served.engine.control.status().accounts[0].last_error is not None,
                "a failed snapshot", clock=served.clock, step=1.0)  # retries wait on the clock
    status, reasons = await readiness(served)
    assert (status, reasons) == (503, ["venue:paper"])
    _, body = await served.json("/api/ops_report")
    assert "simulated network error" in body["venues"][0]["last_error"]
    assert body["badges"]["watchdog"] == "DEGRADED"
    served.venue.faults = FaultPlan()
    await until(lambda: served.engine.control.status().accounts[0].last_error is None,
                "a good snapshot", clock=served.clock, step=1.0)
    assert await readiness(served) == (200, [])


async def test_a_position_unprotected_past_the_sla_is_a_reason_until_its_stop_rests(
        served: Served) -> None:
    served.venue.faults = FaultPlan(reject=1.0)  # every stop placement is refused
    HandApi(served.exchange).open(SOL, PositionSide.LONG, Decimal("2"))
    await until(lambda: served.venue.faults_injected > 0, "a refused stop")
    await served.clock.advance(1)
    assert await readiness(served) == (200, [])  # unprotected, but within the 5 s SLA
    await served.clock.advance(5)
    assert await readiness(served) == (503, [f"unprotected:paper:{SOL}"])
    _, body = await served.json("/api/ops_report")
    assert body["badges"]["watchdog"] == "DEGRADED"
    sol = next(p for p in body["positions"] if p["symbol"] == SOL)
    assert sol["protected"] is False and sol["unprotected_seconds"] > 5

    served.venue.faults = FaultPlan()  # the venue takes orders again
    for _ in range(60):
        if (await readiness(served))[0] == 200:
            break
        await served.clock.advance(1)
    assert await readiness(served) == (200, [])
    assert served.engine.control.status().unprotected == 0


async def test_a_stream_down_past_the_bound_is_a_reason_until_it_is_back(serve) -> None:
    served = await serve(http={"stream_down_seconds": 30})
    served.exchange._emit(StreamStatus(False, "ws closed by venue"))
    await until(lambda: not served.engine.control.status().accounts[0].stream_up, "stream down")
    await served.clock.advance(20)
    assert await readiness(served) == (200, [])  # down, but REST carries it for a while
    _, health = await served.json("/healthz")
    assert health["accounts"][0]["stream_up"] is False
    assert health["accounts"][0]["stream_age_seconds"] == 20
    await served.clock.advance(11)
    assert await readiness(served) == (503, ["stream_down:paper"])
    served.exchange._emit(StreamStatus(True, "reconnected"))
    await until(lambda: served.engine.control.status().accounts[0].stream_up, "stream up")
    assert await readiness(served) == (200, [])


async def test_healthz_is_503_while_the_journal_cannot_be_written(served: Served) -> None:
    journal, db = served.engine.journal, served.engine.db
    await journal.flush()
    [(last,)] = await db.conn.execute_fetchall("SELECT MAX(id) FROM journal")
    # Another writer took the next ids: the journal's next batch fails its INSERT.
    await db.conn.executemany(
        "INSERT OR IGNORE INTO journal (id, at, account, kind, payload, prev_hash, hash)"
        " VALUES (?, '2026-01-05T12:00:00+00:00', 'x', 'x', '{}', 'x', 'x')",
        [(i,) for i in range(last + 1, last + 100)])
    await db.conn.commit()
    await journal.append(ev.EngineStarted(account="engine", mode="paper"))
    with pytest.raises(JournalWriteError):
        await journal.flush()
    status, body = await served.json("/healthz")
    assert status == 503 and body["ok"] is False and body["journal_ok"] is False
    assert "journal write failed" in body["journal_error"]
    _, _, text = await served.text("/metrics")
    assert "vigil_journal_write_ok 0.0" in text

    await journal.append(ev.EngineStarted(account="engine", mode="paper"))
    await journal.flush()  # the next batch commits
    status, body = await served.json("/healthz")
    assert (status, body["journal_ok"], body["journal_error"]) == (200, True, None)


async def test_healthz_is_503_after_the_loop_stalls_and_200_once_it_runs_on_time(
        serve) -> None:
    now = [100.0]
    served = await serve(loop=LoopLag(interval=0.005, now=lambda: now[0]))
    assert (await served.json("/healthz"))[0] == 200
    now[0] += 3.0  # the loop ran nothing for 3 s (a blocking call somewhere)
    status, body = await served.json("/healthz")
    assert status == 503 and body["loop_lag_seconds"] > 1 and body["journal_ok"] is True
    for _ in range(200):  # the monitor's next beats are on time again
        await asyncio.sleep(0.005)
        if (await served.json("/healthz"))[0] == 200:
            break
    status, body = await served.json("/healthz")
    assert status == 200 and body["loop_lag_seconds"] == 0


async def test_the_bearer_token_is_enforced_except_on_healthz(serve) -> None:
    served = await serve(http={"token": TOKEN})
    for path in ("/live-readiness", "/metrics", "/api/ops_report", "/api/ops_report.csv",
                 "/api/positions.csv"):
        async with served.session.get(served.base + path) as response:
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        for wrong in ("Bearer " + TOKEN[:-1], "Bearer " + TOKEN + "x", "Basic " + TOKEN, TOKEN):
            async with served.session.get(served.base + path,
                                          headers={"Authorization": wrong}) as response:
                assert response.status == 401, (path, wrong)
        async with await served.get(path) as response:
            assert response.status == 200, path
    async with served.session.get(served.base + "/healthz") as response:
        assert response.status == 200  # Docker's HEALTHCHECK needs no secret
