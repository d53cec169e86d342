"""The randomized protection test (tests/engine/test_protection_chaos.py) over 1,000+ seeds per
mode (issue 15): REST-only or streaming, venue latency 0 / 50 / 200 ms, today's fault profile and
the harsher one (Binance client-id rule, executed-then-5xx errors); then the chaos-profile modes
(issue 13, tests/engine/test_chaos_profiles.py): a clean venue wrapped in engine/chaos.py's
`harsh` profile (`...-clean-chaos-harsh`).

Each seed is the test's own `Run` at the full scale (45 s of trading, 35 s of settling, the
policy's default 30 s zombie grace) on a virtual clock, so latency costs no wall time. Seeds are
spread over worker processes. Human-readable lines first: per mode the runs, the seeds that broke
the promise (with the first broken check), counts, and the worst time-to-protect: the longest
time any position had no resting stop that counts against the SLA (REST-only: from when the
venue's snapshots could first show the position), the same on the exchange whatever the venue
showed, and the largest journaled `time_to_protect`. The last line is one JSON object with
every figure. To see one failing seed's trace: bench/chaos_trace.py.

Run: `.venv/bin/python bench/chaos.py [--seeds 1000] [--modes rest-only-200ms-harsh,...]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.engine.test_chaos_profiles import MODES as CHAOS_MODES
from tests.engine.test_protection_chaos import (
    BENCH_SCALE,
    MODES,
    SLA,
    TEST_SCALE,
    Mode,
    play_mode,
)

SCALES = {"bench": BENCH_SCALE, "test": TEST_SCALE}
# The fault modes of issue 15, then the venue port wrapped in a chaos profile (issue 13).
ALL_MODES = MODES + CHAOS_MODES


def _play(mode_name: str, start: int, stop: int, scale: str) -> dict[str, Any]:
    """One chunk of seeds of one mode, in a worker process."""
    logger.remove()
    mode = next(m for m in ALL_MODES if m.name == mode_name)
    totals = asyncio.run(play_mode(mode, range(start, stop), SCALES[scale]))
    return {
        "runs": totals.runs, "positions": totals.positions_opened,
        "stops_placed": totals.stops_placed, "closes": totals.closes,
        "replacements": totals.replacements, "zombies": totals.zombies,
        "faults": totals.faults_hit, "worst_unprotected": list(totals.worst_unprotected),
        "worst_journaled_ttp": totals.worst_journaled_ttp, "failures": totals.failures,
        "worst_raw": totals.worst_raw,
    }


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: sum(p[k] for p in parts) for k in (
        "runs", "positions", "stops_placed", "closes", "replacements", "zombies", "faults")}
    merged["worst_unprotected"] = max((p["worst_unprotected"] for p in parts),
                                      key=lambda w: w[0])
    merged["worst_journaled_ttp"] = max(p["worst_journaled_ttp"] for p in parts)
    merged["worst_raw"] = max(p["worst_raw"] for p in parts)
    failures: dict[int, str] = {}
    for p in parts:
        failures.update(p["failures"])
    merged["failures"] = dict(sorted(failures.items()))
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1000, help="seeds per mode")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--modes", default="", help="comma-separated mode names (default all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=50, help="seeds per worker task")
    parser.add_argument("--scale", choices=sorted(SCALES), default="bench")
    args = parser.parse_args()
    for flag in ("seeds", "workers", "chunk"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.first_seed < 0:
        parser.error(f"--first-seed must not be negative, got {args.first_seed}")
    wanted = [n for n in args.modes.split(",") if n]
    unknown = set(wanted) - {m.name for m in ALL_MODES}
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; known: {[m.name for m in ALL_MODES]}")
    modes: list[Mode] = [m for m in ALL_MODES if not wanted or m.name in wanted]
    first, last = args.first_seed, args.first_seed + args.seeds

    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        jobs = {m.name: [pool.submit(_play, m.name, a, min(a + args.chunk, last), args.scale)
                         for a in range(first, last, args.chunk)] for m in modes}
        for name, futures in jobs.items():
            r = results[name] = _merge([f.result() for f in futures])
            worst, seed, symbol = r["worst_unprotected"]
            print(f"{name:24} runs {r['runs']:5}  failed {len(r['failures']):4}  "
                  f"positions {r['positions']:6}  closes {r['closes']:6}  "
                  f"replacements {r['replacements']:5}  zombies {r['zombies']:4}  "
                  f"faults {r['faults']:5}  worst unprotected {worst:.3f} s "
                  f"(seed {seed} {symbol})  on the exchange {r['worst_raw']:.3f} s  "
                  f"worst journaled ttp {r['worst_journaled_ttp']:.3f} s",
                  flush=True)
            for failed_seed, message in list(r["failures"].items())[:8]:
                print(f"    seed {failed_seed}: {message[:200]}", flush=True)
    wall = time.perf_counter() - started

    summary = {
        "seeds_per_mode": args.seeds, "first_seed": first, "scale": args.scale,
        "sla_s": SLA, "wall_s": round(wall, 1), "workers": args.workers,
        "cores": os.cpu_count(), "python": platform.python_version(),
        "modes": {name: {
            "runs": r["runs"], "failed": len(r["failures"]),
            "failed_seeds": list(r["failures"])[:50], "positions": r["positions"],
            "closes": r["closes"], "replacements": r["replacements"], "zombies": r["zombies"],
            "faults": r["faults"], "worst_unprotected_s": round(r["worst_unprotected"][0], 3),
            "worst_unprotected_seed": r["worst_unprotected"][1],
            "worst_on_exchange_s": round(r["worst_raw"], 3),
            "worst_journaled_ttp_s": round(r["worst_journaled_ttp"], 3),
        } for name, r in results.items()},
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
