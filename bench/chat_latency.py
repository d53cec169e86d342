"""Chat latency with a big book (issue #16): `/status` and `/positions` at 1,000 positions.

The composed runtime (`vigil.runtime.Runtime`: engine, notifier, dispatcher, real aiogram polling
over real HTTP) runs in paper mode against the fake Telegram Bot API (`tests/fakes/bot_api.py`),
with the paper price feed running (a random walk of every mark each `--price-interval` s) and
logging as deployed (INFO to the log file). 1,000 positions are opened on the simulated exchange
and protected before measuring. A sample is the time from the update being queued at the fake
server until the bot's first `sendMessage` to that chat arrives there: long poll, dispatch,
role checks, rendering and the HTTP request all inside. Commands are spaced `--gap` s apart
(not a multiple of the price interval, so samples fall at every phase of the feed).

Human-readable lines first; the last line is one JSON object with every figure.
Run: `.venv/bin/python bench/chat_latency.py` (options: --positions, --samples, --gap).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.domain.values import PositionSide
from engine.sim.exchange import HandApi
from tests.fakes import FakeBotAPI
from vigil.logs import setup_logging
from vigil.runtime import Runtime
from vigil.settings import load_settings

USER = 100


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sample(api: FakeBotAPI, text: str) -> tuple[float, int]:
    """Seconds from queueing `text` until the first reply reached the server, and its size."""
    before = len(api.sent("sendMessage", chat_id=USER))
    loop = asyncio.get_running_loop()
    pushed = loop.time()
    api.push_message(USER, text)
    calls = await api.wait_for("sendMessage", lambda c: c.chat_id == USER, count=before + 1,
                               timeout=60)
    reply = calls[before]
    return reply.at - pushed, len(reply.text or "")


async def measure(opts: argparse.Namespace, workdir: Path) -> dict[str, object]:
    async with FakeBotAPI() as api:
        settings = load_settings(
            None, data_dir=workdir / "data",
            sim={"demo_positions": False, "price_interval_seconds": opts.price_interval},
            telegram={"token": api.token, "api_url": api.base_url, "admins": [USER]})
        setup_logging(settings.log_level, settings.data_dir, console_chat=False)  # as deployed
        runtime = Runtime(settings)
        await runtime.start()
        try:
            assert runtime.engine is not None
            sim, guard = runtime.engine.sims["paper"], runtime.engine.guards["paper"]
            hand = HandApi(sim)
            for i in range(opts.positions):
                symbol = f"S{i:04d}/USDT:USDT"
                sim.add_market(symbol, Decimal(100 + i % 50), Decimal("0.01"), Decimal("0.1"),
                               Decimal("0.1"))
                hand.open(symbol, PositionSide.LONG if i % 2 else PositionSide.SHORT,
                          Decimal(1 + i % 5))
            started = time.perf_counter()
            await guard.reconcile_now()
            protect_s = time.perf_counter() - started
            status = guard.status()
            assert status.positions == opts.positions, status
            await sample(api, "/status")  # warm-up: first-use caches, the user's language
            await sample(api, "/positions")
            results: dict[str, list[float]] = {"/status": [], "/positions": []}
            sizes: dict[str, int] = {}
            for _ in range(opts.samples):
                for command in results:
                    await asyncio.sleep(opts.gap)
                    seconds, size = await sample(api, command)
                    results[command].append(seconds)
                    sizes[command] = size
        finally:
            await runtime.stop()
    figures: dict[str, object] = {"positions": opts.positions, "samples": opts.samples,
                                  "first_reconcile_s": round(protect_s, 3),
                                  "unprotected_after": status.unprotected}
    for command, values in results.items():
        key = command.strip("/")
        figures[f"{key}_median_ms"] = round(statistics.median(values) * 1000, 2)
        figures[f"{key}_p90_ms"] = round(quantile(values, 0.9) * 1000, 2)
        figures[f"{key}_max_ms"] = round(max(values) * 1000, 2)
        figures[f"{key}_chars"] = sizes[command]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.137)
    parser.add_argument("--price-interval", type=float, default=1.0)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigil-chat-latency-") as tmp:
        os.chdir(tmp)  # no stray .env
        figures = asyncio.run(measure(opts, Path(tmp)))
    for command in ("status", "positions"):
        print(f"/{command:10s} median {figures[f'{command}_median_ms']:8.2f} ms   "
              f"p90 {figures[f'{command}_p90_ms']:8.2f} ms   "
              f"max {figures[f'{command}_max_ms']:8.2f} ms   "
              f"({figures[f'{command}_chars']} characters)")
    print(f"{figures['positions']} positions, first reconcile {figures['first_reconcile_s']} s")
    figures |= {"python": platform.python_version(), "cpus": os.cpu_count()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
