"""The kill -9 soak (issue 14): the paper exchange and `vigil run` as real processes, a seeded
hand trading against them, faults on the wire, and Vigil killed with SIGKILL at random moments
(and right after it journals an intent, found by watching its journal), then restarted on the
same data directory.

Per seed: the hand opens, resizes, flips and closes positions, places stray stops (on positions
and on flat symbols), cancels Vigil's stops; prices walk and gap through stops; the exchange
injects timeouts, lost responses, rejections, 5xx after execution, 429s and stream drops. Then
the market and the hand stop, the faults heal, and the soak checks from the exchange's own
records (GET /state):
  sla        no position without a stop longer than the SLA while Vigil was up (counted from
             Vigil's ready line after each restart: the worst of those is the time-to-protect)
  stops      exactly one stop per position after settle, reduce-only, covering its size
  zombies    no stop resting on a flat symbol after settle (the grace is short here)
  client_ids no client order id used twice on the exchange
  journal    `vigil journal verify` passes after every kill and at the end
  alerts     every alert pending in the outbox when Vigil was killed is sent after the restart
             (at least once), as the fake Bot API recorded it
  approvals  no approval executed twice: at most one close filled per `/close` approval,
             however often Confirm was tapped (twice, right before a kill, again after the
             position was re-opened); the same for [Close] tapped on a "found on the venue"
             alert, and that button, tapped again after the position was closed and re-opened,
             does not even ask
  entries    never two entries for one idempotency key (`POST /signal/soak`, re-sent after
             kills), from the exchange's fills
  trailing   a `/trail`ed position's stop never loosens, across kills, from the exchange's
             record of every trigger its stops took

Vigil runs with a Telegram token pointed at the fake Bot API (tests/fakes/bot_api.py) in this
process: an admin asks `/close SYMBOL` and taps Confirm, taps [Close] on alerts, sets `/trail`,
and alerts go to a group chat. The exchange is SIGKILLed too and restarted on its SQLite file
(Vigil reconnects).

Human-readable lines first; the last line is one JSON object with the figures.

Run: `.venv/bin/python bench/soak.py --seeds 200 --restarts 40 --exchange-restarts 10`
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import random
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.alert_buttons import AlertCallback
from bot.approvals import ApprovalCallback
from engine.domain.ids import OrderPurpose, client_order_id, is_ours
from engine.outbox import AlertAction
from tests.fakes import FakeBotAPI, SentCall

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "DOGE/USDT:USDT")
ACCOUNT = "paper"
ADMIN = 4242  # the admin's private chat: commands, approval prompts and their answers
ALERTS = -100777  # the alert chat (a group)
SIGNAL_SOURCE, SIGNAL_SECRET = "soak", "soak-signal-secret-0123456789"
SLA_SECONDS = 5.0  # Vigil's guard.sla_seconds in the soak, and the bound the soak checks
ZOMBIE_GRACE_SECONDS = 1.0
SETTLE_LIMIT_SECONDS = 30.0
CHAT_WAIT_SECONDS = 20.0  # how long an answer from the bot may take (2 shared cores)
INTENT_KINDS = ("stop_intent", "close_intent", "cancel_intent")
TRAIL = ("0.3", "0.3")  # /trail activation % and callback %
TRAIL_STEPS, TRAIL_STEP = 3, Decimal("0.004")  # favourable moves after /trail


@dataclass(frozen=True)
class Profile:
    """Fault probabilities per venue call (and per streamed event for stream_drop)."""

    transient: float = 0.03
    timeout_before: float = 0.02
    lost_response: float = 0.03
    reject: float = 0.02
    error_after: float = 0.02
    rate_limited: float = 0.03
    stream_drop: float = 0.01

    def faults(self, seed: int) -> dict[str, Any]:
        return {"seed": seed, **self.__dict__}


@dataclass
class Life:
    """One run of the Vigil process: when it was ready, when it was killed or stopped."""

    started: float
    ready: float | None = None
    ended: float | None = None
    ops: int = 0
    rss_kb: list[int] = field(default_factory=list)
    chat_from: float = 0.0  # the fake Bot API's clock when this life began


@dataclass
class Figures:
    seeds: int = 0
    restarts: int = 0
    kills_after_intent: int = 0
    exchange_restarts: int = 0
    operations: int = 0
    faults: int = 0
    breaks: list[str] = field(default_factory=list)
    worst_time_to_protect: float = 0.0  # seconds from a restart's ready line to protected
    worst_unprotected_while_up: float = 0.0
    alerts_checked: int = 0
    alerts_dropped: int = 0
    journal_verifies: int = 0
    approvals: int = 0  # /close approvals asked
    approval_taps: int = 0  # Confirm taps sent (doubles, and late ones, included)
    approval_closes: int = 0  # closes the exchange filled for them
    alert_closes: int = 0  # [Close] taps on "found on the venue" alerts that asked approval
    stale_taps: int = 0  # [Close] taps on an alert about a position since closed and re-opened
    entries: int = 0  # idempotency keys sent
    entry_sends: int = 0  # POSTs (re-sends after kills and doubles included)
    entry_fills: int = 0
    entry_answers: dict[str, int] = field(default_factory=dict)  # by status or refusal
    trails: int = 0
    trail_moves: int = 0  # tightenings of trailed stops the exchange saw
    seconds: dict[str, float] = field(default_factory=dict)  # wall time by phase

    def spent(self, phase: str, since: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.monotonic() - since


@dataclass
class Trailed:
    """A position under /trail: the hand leaves it alone (price moves only) until it ends."""

    symbol: str
    close_side: str  # the side its stops have: sell for a long
    since: float
    until: float | None = None
    baseline: str | None = None  # Vigil's stop on this position when /trail was set


class Soak:
    def __init__(self, workdir: Path, *, ops_per_seed: int, profile: Profile,
                 op_gap: float) -> None:
        self.workdir = workdir
        self.ops_per_seed = ops_per_seed
        self.profile = profile
        self.op_gap = op_gap
        self.data = workdir / "vigil"
        self.config = workdir / "vigil.toml"
        self.figures = Figures()
        self.lives: list[Life] = []
        self.exchange: asyncio.subprocess.Process | None = None
        self.vigil: asyncio.subprocess.Process | None = None
        self.api = FakeBotAPI()
        self.url = ""
        self.signal_url = ""
        self.http: aiohttp.ClientSession | None = None
        self.intervals: list[dict[str, Any]] = []
        self.seed = 0
        self._cursor = 0
        self._faults_before = 0  # injected by exchange processes since killed
        self._scheduled_kills = 0  # kills not asked for by a scenario
        self._history = {"fills_after": 0, "stops_after": 0}
        self.fills: list[dict[str, Any]] = []  # the exchange's, across its restarts
        self.stops: list[dict[str, Any]] = []
        self.entry_keys: dict[str, tuple[str, Decimal]] = {}  # client id -> (key, qty)
        self.trailed: dict[str, Trailed] = {}
        self._pending_alerts: dict[int, tuple[int, str]] = {}  # outbox id -> (chat, text)

    # --- processes -----------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(ROOT)
        return env

    async def start_exchange(self, port: int = 0) -> None:
        """The paper exchange on its SQLite file (the same file and port after a kill)."""
        exchange_dir = self.workdir / "exchange"
        exchange_dir.mkdir(parents=True, exist_ok=True)
        env = {**self._env(), "VIGIL_DATA_DIR": str(exchange_dir), "VIGIL_LOG_LEVEL": "WARNING"}
        with _log(exchange_dir / "stderr.log") as stderr:
            self.exchange = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "vigil.cli", "paper-exchange", "serve", "--port",
                str(port), "--price-interval", "0", "--db", str(exchange_dir / "paper.sqlite3"),
                cwd=self.workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        assert self.exchange.stdout is not None
        line = (await asyncio.wait_for(self.exchange.stdout.readline(), 60)).decode()
        if "listening on" not in line:
            raise RuntimeError(f"paper exchange did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def configure(self) -> None:
        """Vigil's settings: the exchange, the fake Bot API, the signal webhook, fast trailing."""
        await self.api.start()
        http_port = _free_port()
        self.signal_url = f"http://127.0.0.1:{http_port}/signal/{SIGNAL_SOURCE}"
        self.config.write_text(
            f'data_dir = "{self.data}"\nlog_level = "WARNING"\n'
            f'[sim]\nurl = "{self.url}"\n'
            f"[guard]\ninterval_seconds = 1.0\nsla_seconds = {SLA_SECONDS}\n"
            f"zombie_grace_seconds = {ZOMBIE_GRACE_SECONDS}\n"
            f'[telegram]\ntoken = "{self.api.token}"\napi_url = "{self.api.base_url}"\n'
            f"admins = [{ADMIN}]\nalert_chats = [{ALERTS}]\n"
            f"[http]\nenabled = true\nport = {http_port}\n"
            f"[exits]\nmin_interval_seconds = 0.2\n"
            # The hand pushes prices through stops often: a stop-out cool-down would refuse
            # most of the soak's entries (49 of 99 in one run) and exercise nothing.
            f"[risk]\ncool_down_minutes = 0\n"
            f'[signals.sources.{SIGNAL_SOURCE}]\nsecret = "{SIGNAL_SECRET}"\n'
            f'account = "{ACCOUNT}"\n')

    async def start_vigil(self) -> Life:
        begun = time.monotonic()
        life = Life(started=time.time(), chat_from=asyncio.get_running_loop().time())
        self.lives.append(life)
        with _log(self.workdir / "vigil-stderr.log") as stderr, \
                _log(self.workdir / "vigil-stdout.log") as stdout:
            self.vigil = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "vigil.cli", "--config", str(self.config), "run",
                cwd=self.workdir, env=self._env(), stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout, stderr=stderr)
        # Ready: the engine started and the bot polls (Runtime.start is done before polling).
        await self.api.wait_for("getUpdates", lambda c: c.at >= life.chat_from, timeout=60)
        life.ready = time.time()
        self.figures.spent("vigil_start", begun)
        return life

    def _rss_kb(self) -> int | None:
        if self.vigil is None:
            return None
        try:
            text = Path(f"/proc/{self.vigil.pid}/status").read_text()
        except OSError:
            return None
        line = next((ln for ln in text.splitlines() if ln.startswith("VmRSS:")), None)
        return int(line.split()[1]) if line else None

    async def kill_vigil(self) -> None:
        assert self.vigil is not None
        if (rss := self._rss_kb()) is not None:
            self.lives[-1].rss_kb.append(rss)
        self.vigil.send_signal(signal.SIGKILL)
        await self.vigil.wait()
        self.lives[-1].ended = time.time()
        self.vigil = None
        self._pending_alerts.update(self._outbox_pending())
        await self.journal_verify()

    async def stop_vigil(self) -> None:
        if self.vigil is None:
            return
        if (rss := self._rss_kb()) is not None:
            self.lives[-1].rss_kb.append(rss)
        self.vigil.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.vigil.wait(), 60)
        self.lives[-1].ended = time.time()
        self.vigil = None

    async def kill_exchange_and_restart(self) -> None:
        """SIGKILL the exchange, leave Vigil without it a moment, start it again on its file.
        Its open unprotected intervals end at the kill; the new process starts new records."""
        assert self.exchange is not None
        state = await self.state()
        await self.sync_history()
        port = int(self.url.rsplit(":", 1)[1])
        self.exchange.send_signal(signal.SIGKILL)
        await self.exchange.wait()
        killed = time.time()
        self._faults_before += state["faults_injected"]  # the new process counts from 0
        self.intervals.extend({**i, "until": killed} for i in state["open_intervals"])
        await asyncio.sleep(random.Random(self.seed).uniform(0.1, 1.5))
        await self.start_exchange(port)
        self._cursor, self._history = 0, {"fills_after": 0, "stops_after": 0}
        await self.call("POST", "/faults", self.profile.faults(self.seed))
        self.figures.exchange_restarts += 1

    async def stop_exchange(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.exchange is not None:
            self.exchange.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.exchange.wait(), 30)
        await self.api.stop()

    async def journal_verify(self) -> None:
        begun = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vigil.cli", "--config", str(self.config), "journal",
            "verify", cwd=self.workdir, env=self._env(), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        self.figures.journal_verifies += 1
        self.figures.spent("journal_verify", begun)
        if proc.returncode != 0:
            self._break(f"journal: verify failed: {out.decode()} {err.decode()}".strip())

    # --- Vigil's database, read-only -------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.data / 'vigil.sqlite3'}?mode=ro", uri=True,
                               timeout=5)

    def _outbox_pending(self) -> dict[int, tuple[int, str]]:
        with self._db() as db:
            return {row[0]: (row[1], row[2]) for row in db.execute(
                "SELECT id, chat_id, text FROM outbox WHERE status = 'pending'")}

    def _last_journal_id(self) -> int:
        with self._db() as db:
            row = db.execute("SELECT max(id) FROM journal").fetchone()
        return row[0] or 0

    def _intent_after(self, last: int) -> bool:
        marks = ",".join("?" * len(INTENT_KINDS))
        with self._db() as db:
            row = db.execute(f"SELECT 1 FROM journal WHERE id > ? AND kind IN ({marks}) "
                             "LIMIT 1", (last, *INTENT_KINDS)).fetchone()
        return row is not None

    def db_bytes(self) -> int:
        """The database's size with its WAL folded in (a checkpoint first, as SQLite would
        do by itself at 1,000 pages)."""
        with sqlite3.connect(self.data / "vigil.sqlite3", timeout=5) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in self.data.glob("vigil.sqlite3*"))

    # --- the exchange ----------------------------------------------------------------------
    async def call(self, method: str, path: str, body: Any = None) -> Any:
        assert self.http is not None
        async with self.http.request(method, self.url + path, json=body) as response:
            payload = await response.json()
            if response.status not in (200, 400):  # 400: the exchange refused the hand
                raise RuntimeError(f"{path}: HTTP {response.status} {payload}")
            return payload

    async def state(self) -> dict[str, Any]:
        state = await self.call("GET", f"/state?after={self._cursor}")
        finished = [i for i in state["unprotected"] if i["until"] is not None]
        self.intervals.extend(finished[: state["unprotected_next"] - self._cursor])
        self._cursor = state["unprotected_next"]
        state["open_intervals"] = [i for i in state["unprotected"] if i["until"] is None]
        return state

    async def sync_history(self) -> None:
        """The exchange's fills and stop triggers since the last look (kept across its kills)."""
        query = "&".join(f"{k}={v}" for k, v in self._history.items())
        history = await self.call("GET", f"/history?{query}")
        self.fills.extend(history["fills"])
        self.stops.extend(history["stops"])
        self._history = {"fills_after": history["fills_next"],
                         "stops_after": history["stops_next"]}

    async def positions(self) -> dict[str, dict[str, Any]]:
        state = await self.call("GET", "/state?after=1000000000")
        return {p["symbol"]: p for p in state["positions"]}

    # --- the hand --------------------------------------------------------------------------
    async def act(self, rng: random.Random) -> None:
        state = await self.call("GET", "/state?after=1000000000")
        markets = {m["symbol"]: m for m in state["markets"]}
        positions = {p["symbol"]: p for p in state["positions"]}
        self._end_trails(positions)
        symbol = rng.choice(SYMBOLS)
        info, pos, mark = markets[symbol], positions.get(symbol), Decimal(state["marks"][symbol])
        lot, min_qty = Decimal(info["lot"]), Decimal(info["min_qty"])
        lots = Decimal(rng.randint(1, 20))
        roll = rng.random()
        if symbol in self.trailed:  # the hand leaves a trailed position alone; prices move
            await self.move(rng, state)
            return
        if pos is None:
            if roll < 0.55:
                await self.call("POST", "/hand/open", {"symbol": symbol, "qty": str(min_qty * lots),
                                                      "side": rng.choice(["long", "short"])})
            elif roll < 0.7:  # a stray stop on a flat symbol: a zombie from the start
                side = rng.choice(["buy", "sell"])
                away = Decimal("0.97") if side == "sell" else Decimal("1.03")
                await self.call("POST", "/hand/stop", {
                    "symbol": symbol, "side": side, "qty": str(min_qty),
                    "trigger_price": str(_on_tick(mark * away, info["tick"]))})
            else:
                await self.move(rng, state)
            return
        qty, side = Decimal(pos["qty"]), pos["side"]
        if roll < 0.15:
            await self.call("POST", "/hand/open", {"symbol": symbol, "side": side,
                                                  "qty": str(lot * lots)})  # add
        elif roll < 0.28:
            part = lot * lots
            if part < qty:
                await self.call("POST", "/hand/close", {"symbol": symbol, "qty": str(part)})
        elif roll < 0.38:
            await self.call("POST", "/hand/close", {"symbol": symbol})
        elif roll < 0.48:  # flip through zero
            other = "short" if side == "long" else "long"
            await self.call("POST", "/hand/open", {"symbol": symbol, "side": other,
                                                  "qty": str(qty + min_qty * lots)})
        elif roll < 0.58:  # an extra stop by hand
            away = Decimal(str(round(rng.uniform(0.005, 0.04), 4)))
            factor = 1 - away if side == "long" else 1 + away
            await self.call("POST", "/hand/stop", {
                "symbol": symbol, "trigger_price": str(_on_tick(mark * factor, info["tick"]))})
        elif roll < 0.7:
            ours = [o for o in state["open_orders"]
                    if o["symbol"] == symbol and (o["client_id"] or "").startswith("vg")]
            if ours:
                await self.call("POST", "/hand/cancel", {"order_id": rng.choice(ours)["order_id"]})
        else:
            await self.move(rng, state)

    async def move(self, rng: random.Random, state: dict[str, Any]) -> None:
        """A walk on one symbol, or a gap straight through a resting stop."""
        stops = [o for o in state["open_orders"] if o["trigger_price"]]
        markets = {m["symbol"]: m for m in state["markets"]}
        if stops and rng.random() < 0.35:
            stop = rng.choice(stops)
            trigger = Decimal(stop["trigger_price"])
            beyond = Decimal("0.995") if stop["side"] == "sell" else Decimal("1.005")
            symbol, price = stop["symbol"], trigger * beyond
        else:
            symbol = rng.choice(SYMBOLS)
            step = Decimal(str(round(rng.gauss(0, 0.004), 5)))
            price = Decimal(state["marks"][symbol]) * (1 + step)
        await self.mark(symbol, price, markets[symbol]["tick"])

    async def mark(self, symbol: str, price: Decimal, tick: str) -> None:
        await self.call("POST", "/hand/mark", {"symbol": symbol,
                                               "price": str(_on_tick(price, tick))})

    # --- the admin in Telegram, and the signal sender ----------------------------------------
    async def say(self, text: str) -> SentCall | None:
        """A command from the admin; the bot's first answer in the admin's chat (or None)."""
        before = len(self.api.sent("sendMessage", chat_id=ADMIN))
        self.api.push_message(ADMIN, text)
        try:
            calls = await self.api.wait_for(
                "sendMessage", lambda c: _same(c.chat_id, ADMIN), count=before + 1,
                timeout=CHAT_WAIT_SECONDS)
        except AssertionError:
            return None
        return calls[before]

    async def tap(self, approval_id: str, message_id: int, *, chat_id: int = ADMIN) -> str:
        self.figures.approval_taps += 1
        return self.api.push_callback(ADMIN, ApprovalCallback(id=approval_id, yes=True).pack(),
                                      message_id=message_id, chat_id=chat_id)

    async def approve(self, rng: random.Random) -> None:
        """`/close SYMBOL`, then Confirm: sometimes twice, sometimes with a kill before or right
        after the tap, and once more after the hand re-opened the symbol. Checked: at most one
        close filled for the approval, whatever the taps."""
        held = [p for s, p in (await self.positions()).items() if s not in self.trailed]
        if not held:
            return
        pos = rng.choice(held)
        symbol = pos["symbol"]
        begun = time.time()
        answer = await self.say(f"/close {_plain(symbol)}")
        buttons = _approval_buttons(answer)
        if answer is None or buttons is None:
            return  # the position was gone already (a stop fired), or the bot was slow
        self.figures.approvals += 1
        approval_id, message_id = buttons
        if rng.random() < 0.2:  # the approval waits in the database across a kill
            await self.kill_and_restart(rng, quiet=True)
        for _ in range(2 if rng.random() < 0.3 else 1):
            await self.tap(approval_id, message_id)
        if rng.random() < 0.3:  # killed while the close may be on its way
            await asyncio.sleep(rng.uniform(0, 0.3))
            await self.kill_and_restart(rng, quiet=True)
        if await self._flat(symbol, CHAT_WAIT_SECONDS):
            await self.call("POST", "/hand/open", {"symbol": symbol, "side": pos["side"],
                                                  "qty": pos["qty"]})
            late = await self.tap(approval_id, message_id)
            try:
                await self.api.wait_for(
                    "answerCallbackQuery",
                    lambda c: c.params.get("callback_query_id") == late,
                    timeout=CHAT_WAIT_SECONDS)
            except AssertionError:
                self._break(f"seed {self.seed}: approvals: a late tap on {approval_id} was "
                            "never answered")
        await self.sync_history()
        self._check_approval(approval_id, symbol, begun)

    async def approve_by_alert(self, rng: random.Random) -> None:
        """The hand opens a position; Vigil's "found on the venue" alert carries [Close]: the
        admin taps it and confirms (sometimes twice, sometimes with a kill after the tap).
        Checked: at most one close filled for it. Then the hand re-opens the symbol, and once
        Vigil has adopted the new position the admin taps the old alert's [Close] again:
        it must not even ask (the button is pinned to the position it was sent about)."""
        positions = await self.positions()
        flat = [s for s in SYMBOLS if s not in positions and s not in self.trailed]
        if not flat:
            return
        symbol, side = rng.choice(flat), rng.choice(["long", "short"])
        state = await self.call("GET", "/state?after=1000000000")
        info = next(m for m in state["markets"] if m["symbol"] == symbol)
        qty = str(Decimal(info["min_qty"]) * rng.randint(1, 5))
        since = len(self.api.sent("sendMessage", chat_id=ALERTS))
        await self.call("POST", "/hand/open", {"symbol": symbol, "side": side, "qty": qty})
        button = await self._close_button(symbol, since)
        if button is None:
            return  # the position was gone already (a stop fired), or the alert was slow
        begun = time.time()
        prompt = await self._tap_alert(button)
        if prompt is None:
            return
        self.figures.alert_closes += 1
        approval_id, message_id = prompt
        for _ in range(2 if rng.random() < 0.3 else 1):
            await self.tap(approval_id, message_id, chat_id=ALERTS)
        if rng.random() < 0.3:  # killed while the close may be on its way
            await asyncio.sleep(rng.uniform(0, 0.3))
            await self.kill_and_restart(rng, quiet=True)
        flat_again = await self._flat(symbol, CHAT_WAIT_SECONDS)
        await self.sync_history()
        self._check_approval(approval_id, symbol, begun)
        if not flat_again:
            return
        generation = self._generation(symbol)
        await self.call("POST", "/hand/open", {"symbol": symbol, "side": side, "qty": qty})
        deadline = time.monotonic() + CHAT_WAIT_SECONDS
        while self._generation(symbol) <= generation:  # Vigil adopted the new position
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)
        self.figures.stale_taps += 1
        if await self._tap_alert(button) is not None:
            self._break(f"seed {self.seed}: alert buttons: a [Close] sent about an earlier "
                        f"position on {symbol} asked to close the re-opened one")

    async def _close_button(self, symbol: str, since: int) -> tuple[int, int] | None:
        """(outbox row, message id) of the first alert about `symbol` sent to the alert chat
        after its first `since` messages that carries [Close]."""
        deadline = time.monotonic() + CHAT_WAIT_SECONDS
        while time.monotonic() < deadline:
            rows = {}
            for call in self.api.sent("sendMessage", chat_id=ALERTS)[since:]:
                if call.response is None:
                    continue
                for row in (call.params.get("reply_markup") or {}).get("inline_keyboard", []):
                    for button in row:
                        data = button.get("callback_data") or ""
                        if data.startswith(AlertCallback.__prefix__ + ":"):
                            tap = AlertCallback.unpack(data)
                            if tap.do is AlertAction.CLOSE:
                                rows[tap.row] = int(call.response["result"]["message_id"])
            if rows:
                marks = ",".join("?" * len(rows))
                with self._db() as db:
                    about = {row: json.loads(spec)["symbol"] for row, spec in db.execute(
                        f"SELECT id, buttons FROM outbox WHERE id IN ({marks})", tuple(rows))}
                for row in sorted(rows):
                    if about.get(row) == symbol:
                        return row, rows[row]
            await asyncio.sleep(0.1)
        return None

    async def _tap_alert(self, button: tuple[int, int]) -> tuple[str, int] | None:
        """Tap [Close] on an alert; the approval prompt it brought (id, message), or None once
        the bot answered the tap without one."""
        row, message_id = button
        before = len(self.api.sent("sendMessage", chat_id=ALERTS))
        tap = self.api.push_callback(ADMIN, AlertCallback(row=row, do=AlertAction.CLOSE).pack(),
                                     message_id=message_id, chat_id=ALERTS)
        try:
            await self.api.wait_for("answerCallbackQuery",
                                    lambda c: c.params.get("callback_query_id") == tap,
                                    timeout=CHAT_WAIT_SECONDS)
        except AssertionError:
            self._break(f"seed {self.seed}: alert buttons: a tap on row {row} was never "
                        "answered")
            return None
        await asyncio.sleep(0.2)  # the prompt follows the answer
        for call in self.api.sent("sendMessage", chat_id=ALERTS)[before:]:
            if (prompt := _approval_buttons(call)) is not None:
                return prompt
        return None

    def _generation(self, symbol: str) -> int:
        """Vigil's generation counter for the symbol: +1 at each position it adopts."""
        with self._db() as db:
            row = db.execute("SELECT value FROM state WHERE scope = 'generation' AND key = ?",
                             (f"{ACCOUNT}|{symbol}",)).fetchone()
        return int(row[0]) if row else 0

    def _check_approval(self, approval_id: str, symbol: str, begun: float) -> None:
        """At most one close of Vigil's filled on the symbol since `/close` was asked (nothing
        else closes it meanwhile: the hand and the prices are still during the scenario)."""
        closes = [f for f in self.fills if f["symbol"] == symbol and f["at"] >= begun
                  and (f["client_id"] or "").startswith("vgc")]
        self.figures.approval_closes += len(closes)
        if len(closes) > 1:
            self._break(f"seed {self.seed}: approvals: {approval_id} on {symbol} closed "
                        f"{len(closes)} times: {closes}")

    async def _flat(self, symbol: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while symbol in await self.positions():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def enter(self, rng: random.Random) -> None:
        """An entry by signal with an idempotency key; sometimes sent twice, sometimes cut off
        by a kill and sent again after the restart."""
        state = await self.call("GET", "/state?after=1000000000")
        held = {p["symbol"] for p in state["positions"]}
        flat = [s for s in SYMBOLS if s not in held and s not in self.trailed]
        if not flat:
            return
        symbol = rng.choice(flat)
        info = next(m for m in state["markets"] if m["symbol"] == symbol)
        qty = Decimal(info["min_qty"]) * rng.randint(1, 10)
        key = f"s{self.seed}-{self.figures.entries}"
        body = {"id": key, "symbol": _plain(symbol), "side": rng.choice(["buy", "sell"]),
                "size": str(qty), "sl": "2%"}
        self.entry_keys[_entry_client_id(symbol, key)] = (key, qty)
        self.figures.entries += 1
        roll = rng.random()
        if roll < 0.3:  # the kill lands while the entry may be on its way
            sent = asyncio.create_task(self.signal(body))
            await asyncio.sleep(rng.uniform(0, 0.3))
            await self.kill_and_restart(rng, quiet=True)
            await sent
        await self.signal(body)
        if roll > 0.8:
            await self.signal(body)  # the sender retried

    async def signal(self, body: dict[str, str]) -> None:
        assert self.http is not None
        self.figures.entry_sends += 1
        try:
            async with self.http.post(self.signal_url, json=body,
                                      headers={"X-Vigil-Token": SIGNAL_SECRET}) as response:
                answer = await response.json(content_type=None)
            outcome = ":".join(str(answer[k]) for k in ("status", "reason", "error")
                               if answer.get(k)) or str(response.status)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            outcome = "cut off"  # Vigil was killed under it: the sender sends again
        answers = self.figures.entry_answers
        answers[outcome] = answers.get(outcome, 0) + 1

    async def trail(self, rng: random.Random) -> None:
        """`/trail` on a position, then the price moves its way so the stop tightens."""
        state = await self.call("GET", "/state?after=1000000000")
        held = [p for p in state["positions"] if p["symbol"] not in self.trailed]
        if not held:
            return
        pos = rng.choice(held)
        symbol, long = pos["symbol"], pos["side"] == "long"
        close_side = "sell" if long else "buy"
        baseline = next((o["trigger_price"] for o in state["open_orders"] if o["symbol"] == symbol
                         and o["side"] == close_side and is_ours(o["client_id"])), None)
        if await self.say(f"/trail {_plain(symbol)} {TRAIL[0]} {TRAIL[1]}") is None:
            return
        self.trailed[symbol] = Trailed(symbol, close_side, time.time(), baseline=baseline)
        self.figures.trails += 1
        tick = next(m["tick"] for m in state["markets"] if m["symbol"] == symbol)
        mark = Decimal(state["marks"][symbol])
        for _ in range(TRAIL_STEPS):
            mark *= 1 + TRAIL_STEP if long else 1 - TRAIL_STEP
            await self.mark(symbol, mark, tick)
            await asyncio.sleep(0.6)  # ticks, a snapshot and the exits min interval (0.2 s)

    def _end_trails(self, positions: dict[str, dict[str, Any]]) -> None:
        now = time.time()
        for symbol, trail in self.trailed.items():
            if trail.until is None and symbol not in positions:
                trail.until = now

    def _check_trails(self) -> None:
        """Vigil's stops on each trailed position, in the order the exchange saw them: each
        trigger at least as tight as the one before."""
        now = time.time()
        for trail in self.trailed.values():
            until = trail.until or now
            # From the stop the position had when /trail was set (not an older position's).
            seen = [trail.baseline] if trail.baseline is not None else []
            seen += [s["trigger_price"] for s in self.stops if s["symbol"] == trail.symbol
                     and is_ours(s["client_id"]) and s["side"] == trail.close_side
                     and trail.since <= s["at"] <= until]
            for old, new in itertools.pairwise(seen):
                a, b = Decimal(old), Decimal(new)
                looser = b < a if trail.close_side == "sell" else b > a
                if looser:
                    self._break(f"seed {self.seed}: trailing: {trail.symbol} stop loosened "
                                f"from {a} to {b}")
                elif a != b:
                    self.figures.trail_moves += 1
        self.trailed = {}

    def _check_entries(self) -> None:
        """Never two entries for one key: each key's entry order filled at most once, at most
        its size; no entry order the soak did not ask for."""
        by_client: dict[str, list[dict[str, Any]]] = {}
        for fill in self.fills:
            if (fill["client_id"] or "").startswith("vge"):
                by_client.setdefault(fill["client_id"], []).append(fill)
        self.figures.entry_fills = sum(len(f) for f in by_client.values())
        for client_id, fills in by_client.items():
            asked = self.entry_keys.get(client_id)
            if asked is None:
                self._break(f"entries: an entry order {client_id} no key asked for: {fills}")
                continue
            key, qty = asked
            total = sum(Decimal(f["qty"]) for f in fills)
            if len(fills) > 1 or total > qty:
                self._break(f"entries: key {key} filled {len(fills)} times, {total} > {qty}")

    # --- one seed --------------------------------------------------------------------------
    async def play_seed(self, seed: int, kills: int, exchange_kills: int = 0) -> None:
        rng = random.Random(seed)
        self.seed = seed
        await self.call("POST", "/faults", self.profile.faults(seed))
        kill_at = sorted(rng.sample(range(self.ops_per_seed), min(kills, self.ops_per_seed)))
        exchange_at = set(rng.sample(range(self.ops_per_seed),
                                     min(exchange_kills, self.ops_per_seed)))
        # each once a seed, at random
        scenarios = [self.approve, self.approve_by_alert, self.enter, self.trail]
        planned = dict(zip(rng.sample(range(self.ops_per_seed),
                                      min(len(scenarios), self.ops_per_seed)), scenarios,
                           strict=False))
        for op in range(self.ops_per_seed):
            while kill_at and kill_at[0] == op:
                kill_at.pop(0)
                await self.kill_and_restart(rng)
            if op in exchange_at:
                await self.kill_exchange_and_restart()
            await planned.get(op, self.act)(rng)
            self.figures.operations += 1
            self.lives[-1].ops += 1
            await asyncio.sleep(rng.uniform(0, 2 * self.op_gap))
        await self.settle_and_check(seed)
        self.figures.seeds += 1

    async def kill_and_restart(self, rng: random.Random, *, quiet: bool = False) -> None:
        """SIGKILL Vigil and start it again on its data directory. Every other kill lands right
        after an intent; the market goes on while Vigil is down (not when `quiet`: a scenario
        that is checking something of its own)."""
        if not quiet:
            self._scheduled_kills += 1
        if not quiet and self._scheduled_kills % 2 == 1:
            # Right after an intent: the hand opens a position, Vigil journals the stop intent
            # before it calls the exchange; the kill lands between the two (or just after).
            last = self._last_journal_id()
            symbol = rng.choice([s for s in SYMBOLS if s not in self.trailed])
            state = await self.call("GET", "/state?after=1000000000")
            info = next(m for m in state["markets"] if m["symbol"] == symbol)
            await self.call("POST", "/hand/open", {"symbol": symbol, "side": "long",
                                                  "qty": str(info["min_qty"])})
            self.figures.operations += 1
            for _ in range(5000):  # up to ~5 s, polling the journal every millisecond
                if self._intent_after(last):
                    break
                await asyncio.sleep(0.001)
            self.figures.kills_after_intent += 1
        await self.kill_vigil()
        for _ in range(0 if quiet else rng.randint(0, 3)):  # the market goes on meanwhile
            await self.act(rng)
            self.figures.operations += 1
        await self.start_vigil()
        self.figures.restarts += 1

    async def settle_and_check(self, seed: int) -> None:
        await self.call("POST", "/faults", {})
        begun = time.monotonic()
        deadline = begun + SETTLE_LIMIT_SECONDS
        while True:
            state = await self.state()
            problems = _settle_problems(state)
            if not problems or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        for problem in problems:
            self._break(f"seed {seed}: {problem}")
        if state["client_ids_reused"]:
            self._break(f"seed {seed}: client_ids: used twice {state['client_ids_reused']}")
        self.figures.faults = self._faults_before + state["faults_injected"]
        self._check_sla(seed, state)
        await self._check_alerts(seed)
        await self.sync_history()
        self._end_trails({p["symbol"]: p for p in state["positions"]})
        self._check_trails()
        self._check_entries()
        self.figures.spent("settle", begun)
        if (rss := self._rss_kb()) is not None:
            self.lives[-1].rss_kb.append(rss)

    def _check_sla(self, seed: int, state: dict[str, Any]) -> None:
        now = time.time()
        spans = [(i["symbol"], i["since"], i["until"]) for i in self.intervals]
        spans += [(i["symbol"], i["since"], now) for i in state["open_intervals"]]
        self.intervals = []
        for symbol, since, until in spans:
            for life in self.lives:
                if life.ready is None:
                    continue
                start, end = max(since, life.ready), min(until, life.ended or now)
                if end <= start:
                    continue
                seconds = end - start
                self.figures.worst_unprotected_while_up = max(
                    self.figures.worst_unprotected_while_up, seconds)
                if since < life.ready and life is not self.lives[0]:
                    self.figures.worst_time_to_protect = max(
                        self.figures.worst_time_to_protect, seconds)
                if seconds > SLA_SECONDS:
                    self._break(f"seed {seed}: sla: {symbol} without a stop {seconds:.2f} s "
                                f"while Vigil was up")

    async def _check_alerts(self, seed: int, wait: float = CHAT_WAIT_SECONDS) -> None:
        """Each alert pending in the outbox at a kill was sent after the restart (at least
        once), as the fake Bot API recorded it."""
        if not self._pending_alerts or self.vigil is None:
            return
        since = self.lives[-1].chat_from if len(self.lives) == 1 else min(
            life.chat_from for life in self.lives[1:])
        deadline = time.monotonic() + wait
        while True:
            sent = [c for c in self.api.sent("sendMessage") if not c.failed and c.at >= since]
            left = {i: (chat, text) for i, (chat, text) in self._pending_alerts.items()
                    if not any(_same(c.chat_id, chat) and text in (c.text or "") for c in sent)}
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        with self._db() as db:
            dropped = {row[0] for row in db.execute(
                "SELECT id FROM outbox WHERE status = 'dropped'")}
        self.figures.alerts_checked += len(self._pending_alerts)
        self.figures.alerts_dropped += len(set(left) & dropped)
        for alert, (chat, text) in left.items():
            if alert not in dropped:
                self._break(f"seed {seed}: alerts: outbox row {alert} for {chat} never sent "
                            f"after the restart: {text[:80]!r}")
        self._pending_alerts = {}

    def _break(self, text: str) -> None:
        self.figures.breaks.append(text)
        print(f"BREAK {text}", flush=True)


def _log(path: Path) -> Any:
    return open(path, "ab")  # the caller closes it (a child process keeps its own copy)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _same(a: Any, b: Any) -> bool:
    return str(a) == str(b)


def _plain(symbol: str) -> str:
    """BTC/USDT:USDT as a person types it: BTCUSDT."""
    return symbol.split(":", 1)[0].replace("/", "")


def _entry_client_id(symbol: str, key: str) -> str:
    """The entry order's client id for a signal key, as the entry service derives it
    (engine/entries/service.py): the soak finds each key's fills by it."""
    record_key = f"{ACCOUNT}|{SIGNAL_SOURCE}:{key}"
    seed = int(hashlib.sha256(record_key.encode()).hexdigest()[:12], 16)
    return client_order_id(ACCOUNT, symbol, seed, OrderPurpose.ENTRY, 0)


def _approval_buttons(answer: SentCall | None) -> tuple[str, int] | None:
    """(approval id, message id) of an approval prompt; None for any other answer."""
    if answer is None or answer.response is None:
        return None
    for row in (answer.params.get("reply_markup") or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data") or ""
            if data.startswith(ApprovalCallback.__prefix__ + ":"):
                return (ApprovalCallback.unpack(data).id,
                        int(answer.response["result"]["message_id"]))
    return None


def _on_tick(price: Decimal, tick: str) -> Decimal:
    step = Decimal(tick)
    return max((price / step).to_integral_value() * step, step)


def _settle_problems(state: dict[str, Any]) -> list[str]:
    """What is still wrong on the exchange: the stop and zombie promises after settle."""
    problems = []
    orders = [o for o in state["open_orders"] if o["kind"] == "stop_loss" or o["reduce_only"]]
    for pos in state["positions"]:
        close_side = "sell" if pos["side"] == "long" else "buy"
        stops = [o for o in orders if o["symbol"] == pos["symbol"] and o["kind"] == "stop_loss"]
        if len(stops) != 1:
            problems.append(f"stops: {pos['symbol']} has {len(stops)} stops")
            continue
        (stop,) = stops
        if stop["side"] != close_side or not stop["reduce_only"] or stop["qty"] != pos["qty"]:
            problems.append(f"stops: {pos['symbol']} {pos['side']} {pos['qty']} has {stop}")
    held = {p["symbol"] for p in state["positions"]}
    for order in orders:
        if order["symbol"] not in held:
            problems.append(f"zombies: {order['symbol']} order {order['order_id']} resting flat")
    return problems


def _spread(total: int, seeds: int, rng: random.Random) -> dict[int, int]:
    """`total` kills over `seeds` seeds, as evenly as they go, the extra ones at random."""
    per_seed = [total // seeds + (1 if i < total % seeds else 0) for i in range(seeds)]
    order = rng.sample(range(seeds), seeds)
    return {order[i]: n for i, n in enumerate(per_seed)}


async def soak(seeds: int, restarts: int, *, ops_per_seed: int, op_gap: float,
               workdir: Path, first_seed: int = 1, exchange_restarts: int = 0
               ) -> dict[str, Any]:
    runner = Soak(workdir, ops_per_seed=ops_per_seed, profile=Profile(), op_gap=op_gap)
    begun = time.monotonic()
    await runner.start_exchange()
    try:
        await runner.configure()
        await runner.start_vigil()
        db_start = runner.db_bytes()
        rng = random.Random(first_seed)
        kills, exchange_kills = _spread(restarts, seeds, rng), _spread(exchange_restarts, seeds,
                                                                         rng)
        for index in range(seeds):
            await runner.play_seed(first_seed + index, kills.get(index, 0),
                                   exchange_kills.get(index, 0))
        await runner.stop_vigil()
        await runner.journal_verify()
        db_growth = runner.db_bytes() - db_start
    finally:
        if runner.vigil is not None:
            runner.vigil.kill()
            await runner.vigil.wait()
        await runner.stop_exchange()
    f = runner.figures
    ops = max(f.operations, 1)
    rss_growth = [(life.rss_kb[-1] - life.rss_kb[0]) * 1000 / life.ops
                  for life in runner.lives if len(life.rss_kb) > 1 and life.ops >= 20]
    return {
        "seeds": f.seeds, "restarts": f.restarts, "kills_after_intent": f.kills_after_intent,
        "exchange_restarts": f.exchange_restarts, "operations": f.operations,
        "faults": f.faults, "invariant_breaks": len(f.breaks),
        "breaks": f.breaks[:20],
        "worst_time_to_protect_after_restart_s": round(f.worst_time_to_protect, 3),
        "worst_unprotected_while_up_s": round(f.worst_unprotected_while_up, 3),
        "sla_s": SLA_SECONDS, "alerts_pending_at_kills": f.alerts_checked,
        "alerts_dropped_by_policy": f.alerts_dropped, "journal_verifies": f.journal_verifies,
        "approvals": f.approvals, "approval_taps": f.approval_taps,
        "approval_closes": f.approval_closes, "alert_closes": f.alert_closes,
        "stale_taps": f.stale_taps, "entry_keys": f.entries,
        "entry_sends": f.entry_sends, "entry_fills": f.entry_fills,
        "entry_answers": f.entry_answers, "trails": f.trails, "trail_moves": f.trail_moves,
        "vigil_rss_mb_max": round(max((kb for life in runner.lives for kb in life.rss_kb),
                                      default=0) / 1024, 1),
        "vigil_rss_kb_per_1000_ops": round(max(rss_growth, default=0.0), 1),
        "db_bytes_per_1000_ops": round(db_growth * 1000 / ops),
        "wall_seconds": round(time.monotonic() - begun, 1),
        "wall_seconds_by_phase": {k: round(v, 1) for k, v in f.seconds.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--ops-per-seed", type=int, default=12)
    parser.add_argument("--op-gap", type=float, default=0.05, help="mean seconds between ops")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--exchange-restarts", type=int, default=None,
                        help="SIGKILLs of the paper exchange (default: a quarter of --restarts)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the processes' files here (default: a temporary directory)")
    args = parser.parse_args(argv)
    exchange_restarts = (args.restarts // 4 if args.exchange_restarts is None
                         else args.exchange_restarts)
    if args.seeds < 1 or args.restarts < 0 or args.ops_per_seed < 1 or exchange_restarts < 0:
        parser.error("--seeds and --ops-per-seed must be >= 1, --restarts and "
                     "--exchange-restarts >= 0")
    with tempfile.TemporaryDirectory(prefix="vigil-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        figures = asyncio.run(soak(args.seeds, args.restarts, ops_per_seed=args.ops_per_seed,
                                   op_gap=args.op_gap, workdir=workdir,
                                   first_seed=args.first_seed,
                                   exchange_restarts=exchange_restarts))
    for line in figures["breaks"]:
        print(f"break: {line}")
    print(f"{figures['seeds']} seeds, {figures['restarts']} restarts "
          f"({figures['kills_after_intent']} right after an intent; "
          f"{figures['exchange_restarts']} of the exchange), "
          f"{figures['operations']} operations, {figures['faults']} faults: "
          f"{figures['invariant_breaks']} invariant breaks; worst time-to-protect after a "
          f"restart {figures['worst_time_to_protect_after_restart_s']} s")
    print(json.dumps(figures))
    return 0 if figures["invariant_breaks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
