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

Human-readable lines first; the last line is one JSON object with the figures.

Run: `.venv/bin/python bench/soak.py --seeds 200 --restarts 40`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "DOGE/USDT:USDT")
READY_LINE = "Vigil is running"
SLA_SECONDS = 5.0  # Vigil's guard.sla_seconds in the soak, and the bound the soak checks
ZOMBIE_GRACE_SECONDS = 1.0
SETTLE_LIMIT_SECONDS = 30.0
INTENT_KINDS = ("stop_intent", "close_intent", "cancel_intent")


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


@dataclass
class Figures:
    seeds: int = 0
    restarts: int = 0
    kills_after_intent: int = 0
    operations: int = 0
    faults: int = 0
    breaks: list[str] = field(default_factory=list)
    worst_time_to_protect: float = 0.0  # seconds from a restart's ready line to protected
    worst_unprotected_while_up: float = 0.0
    alerts_checked: int = 0
    alerts_dropped: int = 0
    journal_verifies: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # wall time by phase

    def spent(self, phase: str, since: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.monotonic() - since


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
        self.url = ""
        self.http: aiohttp.ClientSession | None = None
        self.intervals: list[dict[str, Any]] = []
        self._cursor = 0
        self._readers: list[asyncio.Task[None]] = []
        self._ready: asyncio.Event = asyncio.Event()
        self._pending_alerts: set[int] = set()

    # --- processes -----------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(ROOT)
        return env

    async def start_exchange(self) -> None:
        exchange_dir = self.workdir / "exchange"
        exchange_dir.mkdir(parents=True, exist_ok=True)
        env = {**self._env(), "VIGIL_DATA_DIR": str(exchange_dir), "VIGIL_LOG_LEVEL": "WARNING"}
        with _log(exchange_dir / "stderr.log") as stderr:
            self.exchange = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "vigil.cli", "paper-exchange", "serve", "--port", "0",
                "--price-interval", "0", "--db", str(exchange_dir / "paper.sqlite3"),
                cwd=self.workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        assert self.exchange.stdout is not None
        line = (await asyncio.wait_for(self.exchange.stdout.readline(), 60)).decode()
        if "listening on" not in line:
            raise RuntimeError(f"paper exchange did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        self.config.write_text(
            f'data_dir = "{self.data}"\nlog_level = "WARNING"\n'
            f'[sim]\nurl = "{self.url}"\n'
            f"[guard]\ninterval_seconds = 1.0\nsla_seconds = {SLA_SECONDS}\n"
            f"zombie_grace_seconds = {ZOMBIE_GRACE_SECONDS}\n")
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def start_vigil(self) -> Life:
        begun = time.monotonic()
        life = Life(started=time.time())
        self.lives.append(life)
        self._ready = asyncio.Event()
        with _log(self.workdir / "vigil-stderr.log") as stderr:
            self.vigil = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "vigil.cli", "--config", str(self.config), "run",
                cwd=self.workdir, env=self._env(), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=stderr)
        self._readers.append(asyncio.create_task(self._read_console(self.vigil, life)))
        await asyncio.wait_for(self._ready.wait(), 60)
        self.figures.spent("vigil_start", begun)
        return life

    async def _read_console(self, proc: asyncio.subprocess.Process, life: Life) -> None:
        """The console chat's output (alerts included) goes to a file; the ready line marks
        the start of the SLA clock for this life."""
        assert proc.stdout is not None
        with _log(self.workdir / "console.log") as out:
            async for line in proc.stdout:
                out.write(line)
                if life.ready is None and READY_LINE in line.decode(errors="replace"):
                    life.ready = time.time()
                    self._ready.set()

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
        self._pending_alerts |= self._outbox_pending()
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

    async def stop_exchange(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.exchange is not None:
            self.exchange.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.exchange.wait(), 30)
        for task in self._readers:
            task.cancel()

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

    def _outbox_pending(self) -> set[int]:
        with self._db() as db:
            return {row[0] for row in db.execute(
                "SELECT id FROM outbox WHERE status = 'pending'")}

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

    # --- the hand --------------------------------------------------------------------------
    async def act(self, rng: random.Random) -> None:
        state = await self.call("GET", "/state?after=1000000000")
        markets = {m["symbol"]: m for m in state["markets"]}
        positions = {p["symbol"]: p for p in state["positions"]}
        symbol = rng.choice(SYMBOLS)
        info, pos, mark = markets[symbol], positions.get(symbol), Decimal(state["marks"][symbol])
        lot, min_qty = Decimal(info["lot"]), Decimal(info["min_qty"])
        lots = Decimal(rng.randint(1, 20))
        roll = rng.random()
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
        await self.call("POST", "/hand/mark", {
            "symbol": symbol, "price": str(_on_tick(price, markets[symbol]["tick"]))})

    # --- one seed --------------------------------------------------------------------------
    async def play_seed(self, seed: int, kills: int) -> None:
        rng = random.Random(seed)
        await self.call("POST", "/faults", self.profile.faults(seed))
        kill_at = sorted(rng.sample(range(self.ops_per_seed), min(kills, self.ops_per_seed)))
        for op in range(self.ops_per_seed):
            while kill_at and kill_at[0] == op:
                kill_at.pop(0)
                await self.kill_and_restart(rng)
            await self.act(rng)
            self.figures.operations += 1
            self.lives[-1].ops += 1
            await asyncio.sleep(rng.uniform(0, 2 * self.op_gap))
        await self.settle_and_check(seed)
        self.figures.seeds += 1

    async def kill_and_restart(self, rng: random.Random) -> None:
        if self.figures.restarts % 2 == 0:  # every other kill; the rest at random moments
            # Right after an intent: the hand opens a position, Vigil journals the stop intent
            # before it calls the exchange; the kill lands between the two (or just after).
            last = self._last_journal_id()
            symbol = rng.choice(SYMBOLS)
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
        for _ in range(rng.randint(0, 3)):  # the market goes on while Vigil is down
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
        self.figures.faults = state["faults_injected"]
        self._check_sla(seed, state)
        self._check_alerts(seed)
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

    def _check_alerts(self, seed: int) -> None:
        """Each alert pending at a kill was sent after the restart (at least once)."""
        if not self._pending_alerts or self.vigil is None:
            return
        deadline = time.monotonic() + 10
        while True:
            with self._db() as db:
                rows = dict(db.execute(
                    f"SELECT id, status FROM outbox WHERE id IN "
                    f"({','.join(str(i) for i in self._pending_alerts)})").fetchall())
            left = [i for i in self._pending_alerts if rows.get(i) == "pending"]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.figures.alerts_checked += len(self._pending_alerts)
        self.figures.alerts_dropped += sum(1 for s in rows.values() if s == "dropped")
        lost = [i for i in self._pending_alerts if i not in rows]
        for alert in lost:
            self._break(f"seed {seed}: alerts: outbox row {alert} vanished")
        for alert in left:
            self._break(f"seed {seed}: alerts: outbox row {alert} still pending after restart")
        self._pending_alerts = set()

    def _break(self, text: str) -> None:
        self.figures.breaks.append(text)
        print(f"BREAK {text}", flush=True)


def _log(path: Path) -> Any:
    return open(path, "ab")  # the caller closes it (a child process keeps its own copy)


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


async def soak(seeds: int, restarts: int, *, ops_per_seed: int, op_gap: float,
               workdir: Path, first_seed: int = 1) -> dict[str, Any]:
    runner = Soak(workdir, ops_per_seed=ops_per_seed, profile=Profile(), op_gap=op_gap)
    begun = time.monotonic()
    await runner.start_exchange()
    try:
        await runner.start_vigil()
        db_start = runner.db_bytes()
        per_seed = [restarts // seeds + (1 if i < restarts % seeds else 0) for i in range(seeds)]
        order = random.Random(first_seed).sample(range(seeds), seeds)  # kills spread out
        kills = {order[i]: n for i, n in enumerate(sorted(per_seed, reverse=True))}
        for index in range(seeds):
            await runner.play_seed(first_seed + index, kills.get(index, 0))
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
        "operations": f.operations, "faults": f.faults, "invariant_breaks": len(f.breaks),
        "breaks": f.breaks[:20],
        "worst_time_to_protect_after_restart_s": round(f.worst_time_to_protect, 3),
        "worst_unprotected_while_up_s": round(f.worst_unprotected_while_up, 3),
        "sla_s": SLA_SECONDS, "alerts_pending_at_kills": f.alerts_checked,
        "alerts_dropped_by_policy": f.alerts_dropped, "journal_verifies": f.journal_verifies,
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
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the processes' files here (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.restarts < 0 or args.ops_per_seed < 1:
        parser.error("--seeds and --ops-per-seed must be >= 1, --restarts >= 0")
    with tempfile.TemporaryDirectory(prefix="vigil-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        figures = asyncio.run(soak(args.seeds, args.restarts, ops_per_seed=args.ops_per_seed,
                                   op_gap=args.op_gap, workdir=workdir,
                                   first_seed=args.first_seed))
    for line in figures["breaks"]:
        print(f"break: {line}")
    print(f"{figures['seeds']} seeds, {figures['restarts']} restarts "
          f"({figures['kills_after_intent']} right after an intent), "
          f"{figures['operations']} operations, {figures['faults']} faults: "
          f"{figures['invariant_breaks']} invariant breaks; worst time-to-protect after a "
          f"restart {figures['worst_time_to_protect_after_restart_s']} s")
    print(json.dumps(figures))
    return 0 if figures["invariant_breaks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
