"""Start-up of the console script (issue #16 item 6): `vigil check`, `vigil journal verify` and
`vigil run` against `python -c pass`, each a fresh process, median of --runs.

- check: the whole process (paper mode, the demo book: one pass, then exit);
- verify: the whole process over the journal the checks left;
- run: from the process start until the console prints that Vigil is running (engine started,
  chat ready), then SIGTERM; the shutdown is not counted;
- imports: whether aiogram was imported by the check and verify paths (it must not be).

Human-readable lines first; the last line is one JSON object with every figure.
Run: `.venv/bin/python bench/startup.py` (options: --runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = b"Vigil is running"
NO_AIOGRAM = ("import sys, vigil.cli as c; rc = c.main(sys.argv[1:]); "
              "print('AIOGRAM', 'aiogram' in sys.modules); sys.exit(rc)")


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run_ready(argv: list[str], env: dict[str, str]) -> float:
    """Seconds until `vigil run` says it is running; the process is then stopped."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if READY in line:
                return time.perf_counter() - start
        raise RuntimeError("vigil run exited before it was running")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def imports_aiogram(args: list[str], env: dict[str, str]) -> bool:
    out = subprocess.run([sys.executable, "-c", NO_AIOGRAM, *args], env=env, cwd=ROOT,
                         stdin=subprocess.DEVNULL, capture_output=True, check=True).stdout
    return b"AIOGRAM True" in out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    opts = parser.parse_args()
    vigil = str(Path(sys.executable).with_name("vigil"))
    with tempfile.TemporaryDirectory(prefix="vigil-startup-") as tmp:
        config = Path(tmp) / "vigil.toml"
        config.write_text(f'data_dir = "{Path(tmp) / "data"}"\nlog_level = "WARNING"\n')
        env = {**os.environ, "VIGIL_CONFIG": str(config)}
        env.pop("VIGIL_TELEGRAM__TOKEN", None)
        figures: dict[str, list[float]] = {"pass": [], "check": [], "verify": [], "run": []}
        timed([vigil, "check"], env)  # warm-up: the database exists, caches are warm
        for _ in range(opts.runs):
            figures["pass"].append(timed([sys.executable, "-c", "pass"], env))
            figures["check"].append(timed([vigil, "check"], env))
            figures["verify"].append(timed([vigil, "journal", "verify"], env))
            figures["run"].append(run_ready([vigil, "run"], env))
        check_aiogram = imports_aiogram(["check"], env)
        verify_aiogram = imports_aiogram(["journal", "verify"], env)
    med = {name: statistics.median(values) for name, values in figures.items()}
    for name, values in figures.items():
        print(f"{name:7s} median {med[name] * 1000:8.1f} ms  min {min(values) * 1000:8.1f}"
              f"  max {max(values) * 1000:8.1f}  ({med[name] / med['pass']:.1f}x python -c pass)")
    print(f"aiogram imported: check {check_aiogram}, journal verify {verify_aiogram}")
    print(json.dumps({
        "runs": opts.runs, "python": platform.python_version(), "cpus": os.cpu_count(),
        **{f"{name}_median_s": round(value, 4) for name, value in med.items()},
        "check_over_pass": round(med["check"] / med["pass"], 1),
        "verify_over_pass": round(med["verify"] / med["pass"], 1),
        "check_imports_aiogram": check_aiogram, "verify_imports_aiogram": verify_aiogram}))


if __name__ == "__main__":
    main()
