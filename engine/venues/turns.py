"""A big listing parsed a slice at a time, with a turn of the event loop between slices.

ccxt parses a listing row by row in plain Python: 2,000 positions and their 2,000 stops cost
~270 ms of CPU, and our reports of them ~50 ms more. In one piece that holds up every other task
on the loop (the bot, the chat, each supervisor) for as long. Slices of `ROWS_PER_TURN` rows keep
each piece to a few ms; the CPU is the same. Measured against `asyncio.to_thread`, which leaves
the loop waiting up to the GIL's switch interval (5 ms) for each turn while the thread parses:
docs/BENCHMARKS.md, "ccxt parsing in turns of the loop"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

Row = TypeVar("Row")
Parsed = TypeVar("Parsed")

# ~60 µs a row through ccxt's parse_* and ~15 µs through our report: ~2-3 ms a slice here
ROWS_PER_TURN = 32


async def in_turns(rows: Sequence[Row], parse: Callable[[Sequence[Row]], Iterable[Parsed]],
                   per_turn: int = ROWS_PER_TURN) -> list[Parsed]:
    """`parse` over consecutive slices of `rows`, in order, the loop taking a turn before each
    slice; a listing of one slice is parsed at once, as before."""
    if per_turn < 1:
        raise ValueError(f"per_turn must be at least 1, not {per_turn}")
    parsed: list[Parsed] = []
    several = len(rows) > per_turn
    for start in range(0, len(rows), per_turn):
        if several:  # the first too: the answer's JSON was just decoded in this same turn
            await asyncio.sleep(0)
        parsed.extend(parse(rows[start:start + per_turn]))
    return parsed
