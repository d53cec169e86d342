"""`make acceptance`: Vigil as a user runs it (`vigil run`, paper mode, console chat) with the
`mild` chaos profile for ACCEPTANCE_SECONDS (default 40), then stopped with SIGINT. Passes only
if, from the journal and `vigil check`: every position ended protected, no SLA breach was
journaled, stops were placed, the hash chain holds, /status named the profile, and the process
stopped cleanly. Last line printed: one JSON object."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VIGIL = [sys.executable, "-m", "vigil.cli"]
SECONDS = float(os.environ.get("ACCEPTANCE_SECONDS", "40"))


def health_checks(base_url: str) -> dict[str, object]:
    """GET /healthz and /live-readiness on the ops app: each must answer 200 (a 503 names its
    reasons in the body, which is reported)."""
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    answers: dict[str, object] = {}
    for path in ("/healthz", "/live-readiness"):
        try:
            with urlopen(base_url + path, timeout=5) as response:
                answers[path] = {"status": response.status, **json.loads(response.read())}
        except HTTPError as exc:
            answers[path] = {"status": exc.code, "body": exc.read().decode(errors="replace")}
        except URLError as exc:
            answers[path] = {"status": None, "error": str(exc.reason)}
    return answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def journal_facts(data_dir: Path) -> dict[str, int]:
    from storage.db import Database
    from storage.journal import Journal

    db = await Database.open(data_dir / "vigil.sqlite3")
    try:
        rows = await Journal(db).rows(limit=1_000_000)
    finally:
        await db.close()
    kinds = [r.kind for r in rows]
    return {k: kinds.count(k) for k in ("position_adopted", "stop_placed", "sla_breached",
                                        "venue_failure", "stream_changed")} | {"rows": len(rows)}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vigil-acceptance-") as tmp:
        data = Path(tmp) / "data"
        config = Path(tmp) / "vigil.toml"
        port = free_port()
        config.write_text(f'data_dir = "{data}"\n[sim]\nlatency_ms = 50\n'
                          '[guard]\ninterval_seconds = 2.0\n[chaos]\nprofile = "mild"\n'
                          f'[http]\nenabled = true\nport = {port}\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        args = ["--config", str(config)]
        proc = subprocess.Popen([*VIGIL, *args, "run"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, cwd=tmp)
        assert proc.stdin is not None
        started = time.monotonic()
        time.sleep(SECONDS / 2)
        proc.stdin.write("/status\n")
        proc.stdin.flush()
        health = health_checks(f"http://127.0.0.1:{port}")
        time.sleep(SECONDS / 2)
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        ran = time.monotonic() - started
        check = subprocess.run([*VIGIL, *args, "check"], capture_output=True, text=True,
                               env=env, cwd=tmp)
        verify = subprocess.run([*VIGIL, *args, "journal", "verify"], capture_output=True,
                                text=True, env=env, cwd=tmp)
        facts = asyncio.run(journal_facts(data))
    problems = []
    if proc.returncode != 0:
        problems.append(f"vigil run exited {proc.returncode}")
    if "Chaos profile mild" not in output:
        problems.append("/status did not name the chaos profile")
    if check.returncode != 0:
        problems.append("vigil check: not every position is protected:\n" + check.stdout)
    if verify.returncode != 0:
        problems.append("journal verify failed: " + verify.stdout)
    for path, answer in health.items():
        if not isinstance(answer, dict) or answer.get("status") != 200:
            problems.append(f"{path} did not answer 200: {answer}")
    if facts["sla_breached"]:
        problems.append(f"{facts['sla_breached']} SLA breaches journaled")
    if not facts["stop_placed"]:
        problems.append("no stop was placed (the demo's unprotected position?)")
    for problem in problems:
        print("FAIL:", problem)
    print("acceptance:", "OK" if not problems else "FAILED")
    print(json.dumps({"ok": not problems, "seconds": round(ran, 1), "profile": "mild",
                      "journal": facts, "check_exit": check.returncode, "health": health}))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
