"""Re-run one seed of one chaos mode (tests/engine/test_protection_chaos.py) and print, in
virtual-time order, what happened to one symbol: the exchange's own events, every venue call
the guard made (with the fault injected, if any), and the journal. Then the broken check, if
any. A debugging aid for `bench/chaos.py` failures, not a benchmark.

Run: `.venv/bin/python bench/chaos_trace.py --mode rest-only-200ms-harsh --seed 20
      [--symbol ETH/USDT:USDT] [--scale bench|test] [--from 10.0] [--to 30.0]`
Without --symbol it traces the symbol the first broken check names (else every symbol).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.domain import events as ev
from engine.domain.reports import FillUpdate, OrderUpdate, PositionUpdate
from tests.engine.test_chaos_profiles import MODES as CHAOS_MODES
from tests.engine.test_protection_chaos import BENCH_SCALE, MODES, TEST_SCALE, Run

SCALES = {"bench": BENCH_SCALE, "test": TEST_SCALE}
SKIP_FIELDS = {"account", "symbol"}


def _short(value: object) -> str:
    return f"{value:%H:%M:%S.%f}"[:-3] if hasattr(value, "strftime") else str(value)


def _describe(obj: Any) -> str:
    return " ".join(f"{f.name}={_short(getattr(obj, f.name))}" for f in fields(obj)
                    if f.name not in SKIP_FIELDS and getattr(obj, f.name) not in (None, ""))


def _symbol_of(obj: Any) -> str | None:
    if isinstance(obj, OrderUpdate):
        return obj.order.symbol
    if isinstance(obj, FillUpdate):
        return obj.fill.symbol
    return getattr(obj, "symbol", None)


class Tracer:
    """Collects (virtual time, source, symbol, text) lines while the run plays."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.lines: list[tuple[float, int, str, str | None, str]] = []
        run.exchange.listen(self._exchange)
        check_journal = run._check_journal

        def journal(event: ev.Event) -> None:
            self._add("journal", _symbol_of(event),
                      f"{type(event).__name__} {_describe(event)}")
            errors = len(run.journal_errors)
            check_journal(event)
            for error in run.journal_errors[errors:]:
                self._add("CHECK", _symbol_of(event), f"BROKEN: {error}")

        run._check_journal = journal  # type: ignore[method-assign]
        venue = run.venue
        command, rest = venue._command, venue._rest

        async def traced_command(method: str, execute: Any) -> Any:
            start = self._now()
            before = venue.faults_injected
            try:
                result = await command(method, execute)
            except Exception as exc:
                fault = f" FAULT {type(exc).__name__}: {exc}" if venue.faults_injected > before \
                    else f" {type(exc).__name__}: {exc}"
                self._add("venue", None, f"{method} from {start:.3f}{fault}")
                raise
            symbol = getattr(result, "symbol", None)
            self._add("venue", symbol, f"{method} from {start:.3f} ok {_brief(result)}")
            return result

        async def traced_rest(method: str, *, can_fail: bool = False) -> None:
            start = self._now()
            try:
                await rest(method, can_fail=can_fail)
            except Exception as exc:
                self._add("venue", None, f"{method} from {start:.3f} FAULT {exc}")
                raise
            self._add("venue", None, f"{method} from {start:.3f} ok")

        venue._command = traced_command  # type: ignore[method-assign]
        venue._rest = traced_rest  # type: ignore[method-assign]

    def _now(self) -> float:
        return self.run.clock.monotonic()

    def _add(self, source: str, symbol: str | None, text: str) -> None:
        self.lines.append((self._now(), len(self.lines), source, symbol, text))

    def _exchange(self, event: object) -> None:
        if isinstance(event, PositionUpdate):
            pos = event.position
            text = "flat" if pos is None else f"{pos.side} {pos.qty} entry {pos.entry_price} " \
                f"mark {pos.mark_price}"
            self._add("exchange", event.symbol, f"position {text}")
        elif isinstance(event, OrderUpdate):
            o = event.order
            self._add("exchange", o.symbol, f"order {o.order_id} {o.status} {o.kind} {o.side} "
                      f"qty {o.qty} trig {o.trigger_price} ro={o.reduce_only} cid={o.client_id}")
        elif isinstance(event, FillUpdate):
            f = event.fill
            self._add("exchange", f.symbol, f"fill {f.side} {f.qty} @ {f.price} "
                      f"ro={f.reduce_only} cid={f.client_id}")

    def print(self, symbol: str | None, start: float, end: float) -> None:
        for at, _, source, sym, text in sorted(self.lines):
            if not start <= at <= end:
                continue
            if symbol is not None and sym is not None and sym != symbol:
                continue
            print(f"{at:9.3f}  {source:8} {'' if sym == symbol else (sym or '-') + ' '}{text}")


def _brief(result: object) -> str:
    if result is None:
        return ""
    status = getattr(result, "status", "")
    return f"{getattr(result, 'order_id', '')} {status}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", required=True, choices=[m.name for m in MODES + CHAOS_MODES])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--symbol", default=None)
    parser.add_argument("--scale", choices=sorted(SCALES), default="bench")
    parser.add_argument("--from", dest="start", type=float, default=0.0)
    parser.add_argument("--to", dest="end", type=float, default=float("inf"))
    parser.add_argument("--venue-calls", action="store_true",
                        help="also list snapshot reads (noisy)")
    args = parser.parse_args()
    logger.remove()
    mode = next(m for m in MODES + CHAOS_MODES if m.name == args.mode)
    run = Run(args.seed, mode, SCALES[args.scale])
    tracer = Tracer(run)
    if not args.venue_calls:
        tracer._add = _skip_reads(tracer._add)  # type: ignore[method-assign]
    failure = None
    try:
        await run.play()
        run.check()
    except AssertionError as exc:
        failure = str(exc)
    symbol = args.symbol
    if symbol is None and failure is not None:
        symbol = next((s for s in sorted(run.exchange.markets) if s in failure), None)
    tracer.print(symbol, args.start, args.end)
    print(f"symbol: {symbol or 'all'}  worst unprotected: {run.worst}")
    print(f"broken: {failure}" if failure else "all checks passed")


def _skip_reads(add: Any) -> Any:
    def add_unless_read(source: str, symbol: str | None, text: str) -> None:
        if source == "venue" and text.startswith(("fetch_positions", "fetch_open_orders")):
            return
        add(source, symbol, text)
    return add_unless_read


if __name__ == "__main__":
    asyncio.run(main())
