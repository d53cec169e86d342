"""The kill -9 soak (bench/soak.py, issue 14) in its short form: the paper exchange and
`vigil run` as real processes, Vigil SIGKILLed twice (once right after journaling an intent) and
restarted on the same data directory; every promise checked from the exchange's own records.
And the soak's checks themselves, on records made to break them."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

import aiohttp

from bench.soak import (
    ALERTS,
    SLA_SECONDS,
    Life,
    Profile,
    Soak,
    Trailed,
    _entry_client_id,
    _settle_problems,
    soak,
)


async def test_short_soak_keeps_every_promise_across_kills(tmp_path: Path) -> None:
    figures = await soak(2, 2, ops_per_seed=8, op_gap=0.03, workdir=tmp_path,
                         exchange_restarts=1)
    assert figures["invariant_breaks"] == 0, figures["breaks"]
    assert figures["seeds"] == 2 and figures["restarts"] >= 2  # scenarios kill too
    assert figures["kills_after_intent"] == 1
    assert figures["exchange_restarts"] == 1
    assert figures["operations"] >= 2 * 8
    assert figures["journal_verifies"] == figures["restarts"] + 1  # after each kill, and at the end
    assert figures["worst_time_to_protect_after_restart_s"] <= SLA_SECONDS
    # each seed asked for an approval, sent a signal and trailed a position, all through the
    # fake Bot API and the webhook, and the exchange's records show them done
    assert figures["approvals"] >= 1 and figures["approval_taps"] > figures["approvals"]
    assert figures["approval_closes"] >= 1
    assert figures["alert_closes"] >= 1  # [Close] tapped on a "found on the venue" alert
    assert figures["entry_keys"] >= 1 and figures["entry_fills"] >= 1
    assert figures["trails"] >= 1
    assert figures["alerts_pending_at_kills"] >= 1


def _order(symbol: str, order_id: str, side: str, qty: str, *, kind: str = "stop_loss",
           reduce_only: bool = True) -> dict[str, object]:
    return {"symbol": symbol, "order_id": order_id, "side": side, "qty": qty, "kind": kind,
            "reduce_only": reduce_only, "trigger_price": "1"}


def test_the_settle_check_names_each_broken_promise() -> None:
    sol, eth, xrp = "SOL/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"
    positions = [{"symbol": sol, "side": "long", "qty": "2"},
                 {"symbol": eth, "side": "short", "qty": "1"}]
    good = {"positions": positions, "open_orders": [_order(sol, "1", "sell", "2"),
                                                    _order(eth, "2", "buy", "1")]}
    assert _settle_problems(good) == []
    bad = {"positions": positions, "open_orders": [
        _order(sol, "1", "sell", "2"), _order(sol, "3", "sell", "2"),  # two stops on SOL
        _order(eth, "2", "buy", "0.5"),  # ETH's stop is short of its size
        _order(xrp, "4", "sell", "1")]}  # a stop on a flat symbol
    assert _settle_problems(bad) == [
        "stops: SOL/USDT:USDT has 2 stops",
        f"stops: ETH/USDT:USDT short 1 has {_order(eth, '2', 'buy', '0.5')}",
        "zombies: XRP/USDT:USDT order 4 resting flat"]


def test_the_sla_check_counts_only_the_time_vigil_was_up(tmp_path: Path) -> None:
    runner = Soak(tmp_path, ops_per_seed=1, profile=Profile(), op_gap=0)
    runner.lives = [Life(started=0, ready=10, ended=100), Life(started=150, ready=160)]
    state = {"open_intervals": []}
    # 40 s without a stop, but Vigil was down from 100 to 160: 2 s before, 1.5 s after
    runner.intervals = [{"symbol": "SOL", "since": 98.0, "until": 161.5}]
    runner._check_sla(1, state)
    assert runner.figures.breaks == []
    assert runner.figures.worst_time_to_protect == 1.5
    # while up, longer than the SLA: a break
    runner.intervals = [{"symbol": "ETH", "since": 20.0, "until": 20.0 + SLA_SECONDS + 0.5}]
    runner._check_sla(2, state)
    assert runner.figures.breaks == [
        f"seed 2: sla: ETH without a stop {SLA_SECONDS + 0.5:.2f} s while Vigil was up"]


def test_the_trail_entry_and_approval_records_checks_name_each_broken_promise(
        tmp_path: Path) -> None:
    runner = Soak(tmp_path, ops_per_seed=1, profile=Profile(), op_gap=0)
    runner.seed = 4
    sol, eth = "SOL/USDT:USDT", "ETH/USDT:USDT"
    ours, theirs = "vgs" + "0" * 20, "hand-1"

    def stop(symbol: str, price: str, at: float, client_id: str = ours) -> dict[str, object]:
        return {"symbol": symbol, "client_id": client_id, "side": "sell", "trigger_price": price,
                "at": at}

    # SOL's trailed stop: 95 when /trail was set, tightened to 96 and 97, then back to 96.5
    # after a restart; a hand's looser stop, ETH's (not trailed), an older position's stop
    # (99, before /trail) and one after the position ended do not count.
    runner.stops = [stop(sol, "99", 1), stop(sol, "96", 11), stop(sol, "90", 12, theirs),
                    stop(sol, "97", 13), stop(eth, "10", 14), stop(sol, "96.5", 15),
                    stop(sol, "50", 21)]
    runner.trailed = {sol: Trailed(sol, "sell", since=10, until=20, baseline="95")}
    runner._check_trails()
    assert runner.figures.breaks == [
        "seed 4: trailing: SOL/USDT:USDT stop loosened from 97 to 96.5"]
    assert runner.figures.trail_moves == 2 and runner.trailed == {}

    runner.figures.breaks = []
    key_id = _entry_client_id(sol, "s4-0")
    runner.entry_keys = {key_id: ("s4-0", Decimal("2"))}
    fill = {"client_id": key_id, "symbol": sol, "qty": "2", "at": 1}
    runner.fills = [fill, {**fill, "at": 2},  # the key's entry filled twice
                    {**fill, "client_id": "vge" + "1" * 20}]  # an entry nobody asked for
    runner._check_entries()
    assert runner.figures.breaks == [
        "entries: key s4-0 filled 2 times, 4 > 2",
        f"entries: an entry order vge{'1' * 20} no key asked for: "
        f"[{ {**fill, 'client_id': 'vge' + '1' * 20} }]"]

    runner.figures.breaks = []
    close = {"client_id": "vgc" + "2" * 20, "symbol": sol, "qty": "2", "at": 5}
    runner.fills = [{**close, "at": 1}, close, {**close, "symbol": eth}]  # before, on, elsewhere
    runner._check_approval("ap1", sol, begun=3)
    assert runner.figures.breaks == []
    again = {**close, "client_id": "vgc" + "3" * 20, "at": 7}  # the approval ran twice
    runner.fills.append(again)
    runner._check_approval("ap1", sol, begun=3)
    assert runner.figures.breaks == [
        f"seed 4: approvals: ap1 on {sol} closed 2 times: {[close, again]}"]


async def test_the_alert_check_wants_each_pending_alert_sent_after_the_restart(
        tmp_path: Path) -> None:
    """What the fake Bot API recorded decides: an alert pending at a kill and sent after the
    restart is kept; one never sent is a break; one the outbox dropped by policy is counted."""
    runner = Soak(tmp_path, ops_per_seed=1, profile=Profile(), op_gap=0)
    runner.data.mkdir()
    with sqlite3.connect(runner.data / "vigil.sqlite3") as db:
        db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, status TEXT)")
        db.executemany("INSERT INTO outbox VALUES (?, ?)",
                       [(1, "sent"), (2, "pending"), (3, "dropped")])
    async with runner.api:
        loop = asyncio.get_running_loop()
        runner.lives = [Life(started=0, chat_from=0), Life(started=1, chat_from=loop.time())]
        runner.vigil = object()  # type: ignore[assignment]  # up
        async with aiohttp.ClientSession() as http:
            await http.post(f"{runner.api.base_url}/bot{runner.api.token}/sendMessage",
                            data={"chat_id": str(ALERTS), "text": "⚠️ SOL had no stop (×2)"})
        runner._pending_alerts = {1: (ALERTS, "⚠️ SOL had no stop"), 2: (ALERTS, "ETH gone"),
                                  3: (ALERTS, "old routine")}
        await runner._check_alerts(7, wait=0.2)
    assert runner.figures.breaks == [
        f"seed 7: alerts: outbox row 2 for {ALERTS} never sent after the restart: 'ETH gone'"]
    assert (runner.figures.alerts_checked, runner.figures.alerts_dropped) == (3, 1)
