"""Ops HTTP endpoints under load: latency of each endpoint with many guarded positions.

A paper engine in real time (`Engine.build`, SQLite in a temp dir, the simulated exchange with
`--positions` extra markets, one position each, all protected first), its ops app on 127.0.0.1
port 0, and `--requests` sequential GETs per endpoint over real HTTP. Prints one line per
endpoint; the last line is one JSON object."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import ClientSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import run_bench
from bench.time_to_protect import markets, percentile, wait_until
from engine.domain.reports import MarketInfo
from engine.domain.values import PositionSide
from engine.sim.exchange import HandApi
from vigil.http.app import OPS
from vigil.http.server import ops_reports, ops_server
from vigil.runtime import Engine
from vigil.settings import load_settings

ENDPOINTS = ("/healthz", "/live-readiness", "/metrics", "/api/ops_report",
             "/api/ops_report.csv", "/api/positions.csv")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, data_dir=Path(tmp) / "data",
                                 sim={"demo_positions": False},
                                 http={"enabled": True, "port": 0})
        engine = await Engine.build(settings)
        exchange = engine.sims["paper"]
        for symbol, (mark, tick, lot, min_qty) in markets(args.positions).items():
            exchange.markets[symbol] = MarketInfo(symbol, Decimal(tick), Decimal(lot),
                                                  Decimal(min_qty))
            exchange.marks[symbol] = Decimal(mark)
        await engine.start()
        hand = HandApi(exchange)
        for symbol in markets(args.positions):
            hand.open(symbol, PositionSide.LONG, Decimal("1"))
        await wait_until(lambda: len(engine.control.positions()) == args.positions
                         and engine.control.status().unprotected == 0
                         and all(p.stop_price for p in engine.control.positions()), 120)
        server = ops_server(settings, control=engine.control,
                            reports=ops_reports(settings, engine.control, engine.clock),
                            journal=engine.journal, registry=engine.metrics.registry,
                            db=engine.db, clock=engine.clock)
        await server.start()
        figures: dict[str, Any] = {"positions": args.positions, "requests": args.requests}
        lag_max = 0.0
        try:
            async with ClientSession() as session:
                for path in ENDPOINTS:
                    took, size = [], 0
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        async with session.get(f"http://127.0.0.1:{server.port}{path}") as r:
                            body = await r.read()
                            if r.status not in (200, 503):
                                raise RuntimeError(f"{path}: HTTP {r.status}")
                        took.append(time.perf_counter() - started)
                        size = len(body)
                        lag_max = max(lag_max, server.app[OPS].loop.seconds)
                    key = path.strip("/").replace("/", "_").replace(".", "_").replace("-", "_")
                    figures[f"{key}_p50_ms"] = round(percentile(took, 50) * 1000, 2)
                    figures[f"{key}_p99_ms"] = round(percentile(took, 99) * 1000, 2)
                    figures[f"{key}_bytes"] = size
                    print(f"{path:22} p50 {figures[f'{key}_p50_ms']:8.2f} ms  "
                          f"p99 {figures[f'{key}_p99_ms']:8.2f} ms  {size} bytes", flush=True)
        finally:
            await server.stop()
            await engine.stop()
            await engine.close()
        figures["loop_lag_max_ms"] = round(lag_max * 1000, 2)
        return figures


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    return parser.parse_args()


if __name__ == "__main__":
    run_bench(main, parse())
