"""What every benchmark script does around its own figures: quiet logs, run, and print one JSON
object as the last line (what `docs/BENCHMARKS.md` and any tooling read)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger


def run_bench(main: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]],
              args: argparse.Namespace) -> None:
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    figures = asyncio.run(main(args))
    print(json.dumps(figures, sort_keys=True))
