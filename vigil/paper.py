"""`vigil paper-exchange serve`: the simulated exchange in its own process (engine/sim/server.py),
its state in its own SQLite file (engine/sim/store.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vigil.settings import Settings

if TYPE_CHECKING:
    from engine.sim.server import WireFaults
    from engine.sim.venue import FaultPlan

EXIT_OK, EXIT_CONFIG = 0, 2


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--db", type=Path, default=None, metavar="FILE",
                        help="state file (default <data_dir>/paper-exchange.sqlite3)")
    parser.add_argument("--seed", type=int, default=None, help="price walk seed "
                        "(default sim.seed)")
    parser.add_argument("--price-interval", type=float, default=None, metavar="SECONDS",
                        help="random-walk step (default sim.price_interval_seconds; 0: prices "
                        "move only through /hand/mark)")
    parser.add_argument("--demo", action="store_true",
                        help="a new state file starts with the demo positions")
    parser.add_argument("--faults", default="{}", metavar="JSON",
                        help='fault probabilities, e.g. \'{"reject": 0.05, "rate_limited": 0.1}\'')


def serve_command(settings: Settings, args: argparse.Namespace) -> int:
    from engine.sim.server import parse_faults

    try:
        raw = json.loads(args.faults)
        if not isinstance(raw, dict):
            raise ValueError("--faults must be a JSON object")
        plan, wire = parse_faults(raw)
    except ValueError as exc:
        print(f"vigil: bad --faults: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not 0 <= args.port <= 65535:
        print(f"vigil: bad --port {args.port}: 0..65535", file=sys.stderr)
        return EXIT_CONFIG
    interval = (settings.sim.price_interval_seconds if args.price_interval is None
                else args.price_interval)
    if interval < 0:
        print("vigil: --price-interval must be >= 0", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_serve(settings, args, plan, wire, interval or None))


async def _serve(settings: Settings, args: argparse.Namespace, plan: FaultPlan, wire: WireFaults,
                 interval: float | None) -> int:
    from engine.clock import SystemClock
    from engine.sim.server import serve
    from engine.sim.store import open_paper_exchange

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    clock = SystemClock()
    path = args.db or settings.data_dir / "paper-exchange.sqlite3"
    exchange, store = open_paper_exchange(
        path, clock, seed=settings.sim.seed if args.seed is None else args.seed, demo=args.demo)
    checkpoints = asyncio.create_task(store.run_checkpoints(clock, 5.0))

    def ready(port: int) -> None:
        print(f"paper exchange listening on http://{args.host}:{port} (state in {path})",
              flush=True)

    try:
        await serve(exchange, clock, host=args.host, port=args.port, faults=plan,
                    wire_faults=wire, price_interval=interval, stop=stop, on_ready=ready)
    finally:
        checkpoints.cancel()
        store.close()
    return EXIT_OK
