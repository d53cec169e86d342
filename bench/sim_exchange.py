"""The simulated exchange at scale (issue 16): memory per open/close cycle and price-update cost.

1. RSS growth over 100,000 open/close cycles (open by hand, a stop with a client id, close,
   cancel the stop: four orders and two fills a cycle), after a warm-up that fills the bounded
   order history, so the figure is growth and not the bound itself.
2. The cost of one price update on every market with 1,000 positions, each with a resting stop
   (paper mode's `random_walk`), and of one client-id look-up among them.

Human-readable lines first; the last line is one JSON object with every figure.
Run: `.venv/bin/python bench/sim_exchange.py` (`--cycles N` to change the 100,000).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.clock import ManualClock
from engine.domain.reports import OrderKind
from engine.domain.values import PositionSide
from engine.sim.exchange import HISTORY_LIMIT, HandApi, SimExchange

D = Decimal
SYMBOL = "BTC/USDT:USDT"


def markets(n: int) -> dict[str, tuple[str, str, str, str]]:
    return {f"S{i:04d}/USDT:USDT": ("100", "0.01", "0.1", "0.1") for i in range(n)}


def rss_bytes() -> int:
    """Resident set size now (Linux), after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cycle(ex: SimExchange, hand: HandApi, i: int) -> None:
    hand.open(SYMBOL, PositionSide.LONG, D("0.01"))
    stop = ex.place_trigger(symbol=SYMBOL, side=PositionSide.LONG.close_side, qty=D("0.01"),
                            trigger_price=D(60000), kind=OrderKind.STOP_LOSS,
                            client_id=f"bench-stop-{i}")
    hand.close(SYMBOL)
    ex.cancel(stop.order_id)


def memory(cycles: int) -> dict[str, Any]:
    ex = SimExchange(ManualClock())
    hand = HandApi(ex)
    warm = HISTORY_LIMIT  # >= HISTORY_LIMIT ended orders: the history is at its bound
    for i in range(warm):
        cycle(ex, hand, i)
    before = rss_bytes()
    started = time.perf_counter()
    for i in range(warm, warm + cycles):
        cycle(ex, hand, i)
    seconds = time.perf_counter() - started
    growth = rss_bytes() - before
    return {"cycles": cycles, "rss_growth_mb": round(growth / 2**20, 2),
            "bytes_per_cycle": round(growth / cycles, 1), "orders_kept": len(ex.orders),
            "fills_kept": len(ex.fills), "cycles_per_s": round(cycles / seconds)}


def price_updates(positions: int, rounds: int) -> dict[str, Any]:
    ex = SimExchange(ManualClock(), markets=markets(positions))
    hand = HandApi(ex)
    for i, symbol in enumerate(sorted(ex.markets)):
        hand.open(symbol, PositionSide.LONG, D(1))
        ex.place_trigger(symbol=symbol, side=PositionSide.LONG.close_side, qty=D(1),
                         trigger_price=D(1), kind=OrderKind.STOP_LOSS, client_id=f"s{i}")
    walks = []
    for _ in range(rounds):
        started = time.perf_counter()
        ex.random_walk()
        walks.append(time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(positions):
        assert ex.find_by_client_id(f"s{i}") is not None
    lookup = (time.perf_counter() - started) / positions
    return {"positions": positions, "walk_ms_median": round(statistics.median(walks) * 1e3, 2),
            "walk_ms_max": round(max(walks) * 1e3, 2),
            "per_mark_us": round(statistics.median(walks) / positions * 1e6, 2),
            "lookup_us": round(lookup * 1e6, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100_000)
    parser.add_argument("--positions", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    mem = memory(args.cycles)
    print(f"memory: {mem['cycles']} open/close cycles: RSS +{mem['rss_growth_mb']} MB "
          f"({mem['bytes_per_cycle']} B/cycle); kept {mem['orders_kept']} orders, "
          f"{mem['fills_kept']} fills; {mem['cycles_per_s']} cycles/s")
    prices = price_updates(args.positions, args.rounds)
    print(f"prices: one update of {prices['positions']} marks (each with a stop): median "
          f"{prices['walk_ms_median']} ms, max {prices['walk_ms_max']} ms "
          f"({prices['per_mark_us']} us a mark); client-id look-up {prices['lookup_us']} us")
    print(json.dumps({"memory": mem, "prices": prices}, sort_keys=True))


if __name__ == "__main__":
    main()
