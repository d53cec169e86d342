"""Critical-alert delivery delay with 10,000 routine alerts queued (issue 17).

Real time (SystemClock); the real Notifier and a real aiogram Bot over real HTTP against the fake
Bot API server on 127.0.0.1 (tests/fakes/bot_api.py); the outbox in a SQLite file in a temp dir.
Default pacing: 1 s between messages to one private chat, at most 25 messages a second overall.

Scenarios, each with the sender already draining its backlog when the critical alerts come:
- `none`: no backlog (the control: the delay pacing alone gives);
- `one_chat`: 10,000 distinct routine alerts queued for the alert chat itself;
- `hundred_chats`: 10,000 routine alerts spread over 100 chats, the alert chat among them.
In each, `--criticals` SLA-breach alerts are raised at seeded random moments 0.5-2 s apart; the
delay is from `Notifier.on_event` to the fake server receiving the message. For comparison, the
pre-issue-17 first-in-first-out order is estimated from the routine messages actually sent: the
backlog ahead of the alert divided by the alerts one message carried, times the chat's pacing.

Human-readable lines first; the last line is one JSON object with every figure.
Run: `.venv/bin/python bench/alert_priority.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import run_bench
from bot.i18n import build_i18n
from bot.notifier import PER_CHAT_INTERVAL, Notifier
from bot.roles import RoleBook
from engine.clock import SystemClock
from engine.domain import events as ev
from engine.outbox import Priority
from storage.db import Database
from storage.outbox import OutboxRepo
from storage.repositories import StateRepo
from tests.fakes import FakeBotAPI

ALERT_CHAT = 100


async def scenario(name: str, backlog: int, chats: int, criticals: int,
                   rng: random.Random) -> dict[str, Any]:
    async with FakeBotAPI() as api:
        with tempfile.TemporaryDirectory() as tmp:
            db = await Database.open(Path(tmp) / "vigil.sqlite3")
            bot = Bot(api.token,
                      session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
            outbox = OutboxRepo(db)
            notifier = Notifier(bot, chats=(ALERT_CHAT,), roles=RoleBook(admins=[ALERT_CHAT]),
                                i18n=build_i18n(), state=StateRepo(db), clock=SystemClock(),
                                outbox=outbox)
            targets = [ALERT_CHAT + i for i in range(chats)]
            for n in range(backlog):
                await notifier.enqueue(targets[n % chats], f"routine alert {n}: "
                                       f"{rng.randrange(10**9)} order {n} cancelled")
            ahead = await outbox.pending_count(ALERT_CHAT)
            sender = asyncio.create_task(notifier.run())
            loop = asyncio.get_running_loop()
            await asyncio.sleep(1.0)  # the backlog is being drained
            delays: list[float] = []
            for n in range(criticals):
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                text = f"NO STOP for {n + 10} s"
                raised = loop.time()
                await notifier.on_event(ev.SlaBreached(account="paper", symbol="ETH/USDT:USDT",
                                                       unprotected_seconds=Decimal(n + 10)))
                [call] = await api.wait_for(
                    "sendMessage", lambda c, t=text: c.chat_id == ALERT_CHAT
                    and t in (c.text or "") and not c.failed, timeout=30)
                delays.append(call.at - raised)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            routine = [c.text or "" for c in api.sent("sendMessage", chat_id=ALERT_CHAT)
                       if "routine alert" in (c.text or "") and not c.failed]
            per_message = statistics.mean(t.count("\n") + 1 for t in routine) if routine else 0
            left = sum(1 for r in await outbox.pending() if r.priority is Priority.ROUTINE)
            await bot.session.close()
            await db.close()
    fifo = math.ceil(ahead / per_message) * PER_CHAT_INTERVAL if per_message else 0.0
    result = {
        "scenario": name, "routine_queued": backlog, "chats": chats,
        "routine_ahead_in_alert_chat": ahead, "criticals": criticals,
        "delay_p50_s": round(statistics.median(delays), 3),
        "delay_max_s": round(max(delays), 3),
        "routine_alerts_per_message": round(per_message, 1),
        "fifo_estimate_s": round(fifo, 1), "routine_left_pending": left,
    }
    print(f"{name:>14}: {backlog} routine queued over {chats} chat(s), {ahead} ahead in the "
          f"alert chat; critical delay p50 {result['delay_p50_s']} s, max "
          f"{result['delay_max_s']} s (first-in-first-out would be ~{result['fifo_estimate_s']}"
          f" s); {left} routine still pending")
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    started = time.perf_counter()
    runs = [await scenario("none", 0, 1, args.criticals, rng),
            await scenario("one_chat", args.routine, 1, args.criticals, rng),
            await scenario("hundred_chats", args.routine, 100, args.criticals, rng)]
    worst = max(r["delay_max_s"] for r in runs[1:])
    target = PER_CHAT_INTERVAL + 0.25  # pacing plus a margin for the loop and SQLite
    print(f"worst critical delay behind {args.routine} routine alerts: {worst} s "
          f"(target: pacing {PER_CHAT_INTERVAL} s + 0.25 s = {target} s)")
    return {
        "bench": "alert_priority", "python": platform.python_version(),
        "seconds": round(time.perf_counter() - started, 1), "runs": runs,
        "worst_delay_with_backlog_s": worst, "target_s": target, "target_met": worst <= target,
    }


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routine", type=int, default=10_000)
    parser.add_argument("--criticals", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    run_bench(main, parse())
