"""What one `EventBus.publish` costs with the runtime's wiring (background group-commit journal,
two queued subscribers that do nothing), so a change to the bus can be compared with the code
before it: `--root` runs the same loop against another checkout.

20,000 `StopPlaced` events, yielding to the loop every 100 (so consumers and the journal's
writer run), best of 3 rounds; loguru removed (the log line is not the bus's cost).

Human-readable lines first; the last line is one JSON object.
Run: `.venv/bin/python bench/bus_publish.py` (options: --events, --root).
Compare: `git archive BASE | tar -x -C /tmp/base && .venv/bin/python bench/bus_publish.py
--root /tmp/base`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--events", type=int, default=20_000)
parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
args = parser.parse_args()
sys.path.insert(0, str(args.root.resolve()))

from loguru import logger  # noqa: E402

from engine.bus import EventBus  # noqa: E402
from engine.domain import events as ev  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.journal import Journal  # noqa: E402


async def nothing(event: ev.Event) -> None:
    return None


async def main() -> None:
    events = [ev.StopPlaced(account="bench", symbol="X/USDT:USDT", order_id=str(i),
                            client_id="c", trigger_price=Decimal(1), qty=Decimal(1),
                            time_to_protect=None) for i in range(args.events)]
    best = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database.open(Path(tmp, "p.sqlite3"))
        try:
            journal = Journal(db, background=True, linger=0.002)  # as the runtime's
            bus = EventBus(journal.append, queue_subscribers=True)
            bus.subscribe(nothing)
            bus.subscribe(nothing)
            for _ in range(3):
                start = time.perf_counter()
                for i, event in enumerate(events):
                    await bus.publish(event)
                    if i % 100 == 0:
                        await asyncio.sleep(0)
                await bus.stop()
                best = max(best, len(events) / (time.perf_counter() - start))
        finally:
            await db.close()
    print(f"{args.root}: {best:,.0f} publishes/s ({1e6 / best:.1f} µs each, journal and two "
          "queued subscribers included)")
    print(json.dumps({"root": str(args.root), "events": args.events,
                      "publishes_per_s": round(best), "us_per_publish": round(1e6 / best, 2)},
                     sort_keys=True))


if __name__ == "__main__":
    logger.remove()
    asyncio.run(main())
