"""Open a position with its stop as one act, or roll it back and prove it flat.

The flow, under the symbol's writer lock, held by the position's supervisor (which adopts and
guards whatever the entry leaves, the moment the entry lets go):

  record (pending) -> EntryIntent -> entry order, sent once -> fresh snapshot: what filled ->
  the stop rests (attached to the entry, or placed at once for what filled) -> protected
  |-> the stop cannot rest within the budget -> rollback: reduce-only close of what filled ->
      fresh snapshot shows flat -> leftovers cancelled -> ONE critical EntryRolledBack
      |-> the close keeps failing -> HALT + EntryRollbackFailed (the SLA alert stays loud)

A limit entry rests instead: each fill seen (the stream-fed view, else a venue look-up) is
protected at once, the stop following further fills; at the timeout the unfilled rest is
cancelled and must be gone from the venue (`_rest_limit`). On HALT the rest is cancelled at once
(the one command HALT still sends) and nothing else is sent (`_halt_rest`).

Every step is journaled; the record in the state store (scope "entry") says where it stands,
so a restart resumes a pending entry to protected or verified flat, and the same key never sends
a second entry order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import events as ev
from engine.domain.ids import OrderPurpose, client_order_id
from engine.domain.reports import (
    MarketOrderRequest,
    OrderReport,
    OrderStatus,
    PositionReport,
    StopRequest,
    VenueSnapshot,
)
from engine.domain.values import ZERO, PositionSide
from engine.entries import gates, sizing
from engine.entries.gates import AccountPicture, RiskLimits
from engine.entries.model import (
    EntryPlan,
    EntryRefused,
    EntryRequest,
    EntryResult,
    EntrySource,
    EntryStatus,
    PriceKind,
    PriceSpec,
    Refusal,
)
from engine.errors import OutcomeUnknown, Rejected, RejectReason, Transient, VenueError
from engine.exits.requests import TakeProfitStatus
from engine.ports import Quotes, StateStore
from engine.protection.context import AccountContext
from engine.protection.guard import AccountGuard
from engine.protection.orders import AccountHalted
from engine.protection.reconcile import is_protective_order
from engine.retry import retry_transient

SCOPE = "entry"
PENDING = "entry_pending"  # per account: the keys of entries not finished yet
STOP_ATTEMPTS = 3  # the stop gets this many tries (each with the gateway's own lookups)
STOP_BUDGET_SECONDS = 2.0  # ... within this long after the fill, else the entry is rolled back
ROLLBACK_ATTEMPTS = 4  # closes tried before the account is halted
ROLLBACK_PAUSE = 0.5  # seconds before the next close, doubling
CONTINUE_ATTEMPTS = 4  # a venue read failing past its retries: the continuation runs again
LOOKS = 3  # snapshots before a filled entry the venue does not show is taken for flat
LOOK_PAUSE = 0.2
LIMIT_POLL_SECONDS = 0.5  # a resting limit entry is looked up on the venue this often ...
VIEW_PAUSE = 0.02  # ... and in the stream-fed view this often, for a fill to protect
SOURCE_SCOPE = "position_source"  # account -> {symbol|generation: EntrySource}

HoldOf = Callable[[str], str | None]
PnlToday = Callable[[str], Awaitable[Decimal]]


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holding or waiting


@dataclass(slots=True)
class _Resting:
    """A limit entry running now: a close of its symbol sets `cut`; `ended` is set (with its
    `result`) when the entry let go of the symbol."""

    cut: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    result: EntryResult | None = None


@dataclass(slots=True)
class _Run:
    """One entry in flight: what the journal and the record need at each step."""

    key: str
    plan: EntryPlan
    source: EntrySource
    by: str
    entry_cid: str
    seed: int  # the key's number: every client id of this entry derives from it
    expires_at: str | None = None  # a limit entry: when its unfilled rest is cancelled (UTC)
    cut: bool = False  # a /close ended its resting limit early (not stored: it ended)


class EntryService:
    def __init__(self, guards: dict[str, AccountGuard], *, limits: RiskLimits,
                 state: StateStore, bus: EventBus, clock: Clock, hold_of: HoldOf) -> None:
        self._guards = guards
        self.limits = limits
        self.state = state
        self.bus = bus
        self.clock = clock
        self.hold_of = hold_of
        self.pnl_today: PnlToday | None = None  # wired by the composition root (loss cap)
        self._keys: dict[str, _KeyLock] = {}  # only while a request for the key runs
        # Who opened each position: (account, symbol, generation) -> source; no entry: by hand.
        self._sources: dict[str, dict[str, str]] = {}
        # Limit entries running now, by (account, symbol): set by a /close of the symbol, so
        # the resting rest is cancelled at once instead of holding the writer lock (and the
        # close) until its timeout.
        self._resting: dict[tuple[str, str], _Resting] = {}
        # How each cut-short limit ended (its final order), until the canceller asks
        # (`cut_ended`); at most one per symbol.
        self._cut_ended: dict[tuple[str, str], OrderReport] = {}

    async def load(self) -> None:
        for account in self._guards:
            self._sources[account] = await self.state.get(SOURCE_SCOPE, account, {})

    # --- preview: what would be sent (no order) ----------------------------------------------
    async def preview(self, request: EntryRequest) -> EntryPlan:
        """Size, price and gate the request now. Raises EntryRefused with the reason."""
        guard = self._guard(request.account)
        try:
            symbol = guard.resolve_symbol(request.symbol)
            market = guard.venue.market(symbol)
        except Rejected as exc:
            raise EntryRefused(Refusal.BAD_REQUEST, exc.message or str(exc)) from None
        quotes = guard.venue
        if not isinstance(quotes, Quotes):
            raise EntryRefused(Refusal.BAD_REQUEST, f"{guard.venue_name} gives no prices")
        try:
            mark = await retry_transient(lambda: quotes.mark_price(symbol), self.clock)
            equity = await retry_transient(quotes.equity, self.clock)
        except VenueError as exc:
            raise EntryRefused(Refusal.BAD_REQUEST, f"venue: {exc}") from None
        plan = sizing.plan_entry(
            account=request.account, symbol=symbol, side=request.side, size=request.size,
            stop=request.stop, take_profit=request.take_profit, market=market, mark=mark,
            equity=equity, fee_rate=self.limits.fee_rate,
            attached=guard.venue.capabilities.attached_stop, limit_price=request.limit_price,
            limit_timeout=self.limits.limit_timeout_seconds)
        gates.check(plan, self.limits, await self._picture(guard, symbol, equity))
        return plan

    async def _picture(self, guard: AccountGuard, symbol: str,
                       equity: Decimal | None) -> AccountPicture:
        positions = guard.positions()
        held = next((p for p in positions if p.symbol == symbol), None)
        pnl = await self.pnl_today(guard.account) if self.pnl_today is not None else None
        return AccountPicture(
            hold=self.hold_of(guard.account), halted=guard.halted, pnl_today=pnl,
            open_positions=len(positions),
            open_notional=sum((p.qty * p.mark_price for p in positions), ZERO),
            symbol_open=held is not None, equity=equity,
            cool_down_left=await self._cool_down_left(guard.account, symbol),
            open_side=held.side if held is not None else None)

    async def record(self, account: str, key: str) -> dict[str, Any] | None:
        """The stored record of an entry request (None: this key was never opened)."""
        return await self.state.get(SCOPE, _record_key(account, key))

    # --- open ----------------------------------------------------------------------------------
    async def open(self, request: EntryRequest) -> EntryResult:
        """Gate, send, protect (or roll back). The same key returns the earlier result."""
        if not request.key:
            return _refused(request.key, EntryRefused(Refusal.BAD_REQUEST, "no idempotency key"))
        record_key = _record_key(request.account, request.key)
        fingerprint = _fingerprint(request)
        async with self._key_lock(record_key):
            earlier = await self.state.get(SCOPE, record_key)
            if earlier is not None:
                if earlier["fingerprint"] != fingerprint:
                    return _refused(request.key, EntryRefused(
                        Refusal.DUPLICATE, "this key was used for another request"))
                return replace(_result_from(earlier), replayed=True)
            try:
                plan = await self.preview(request)
            except EntryRefused as exc:
                await self.bus.publish(ev.EntryRefused(
                    account=request.account, key=request.key, symbol=request.symbol,
                    reason=exc.reason.value, detail=exc.detail))
                return _refused(request.key, exc)
            seed = int(hashlib.sha256(record_key.encode()).hexdigest()[:12], 16)
            run = _Run(request.key, plan, request.source, request.by,
                       client_order_id(request.account, plan.symbol, seed, OrderPurpose.ENTRY,
                                       0), seed)
            if plan.limit_price is not None:  # recorded before the send: a restart keeps it
                run.expires_at = (self.clock.now()
                                  + timedelta(seconds=plan.limit_timeout)).isoformat()
            # The record before the order: a crash after the send finds it and resumes.
            await self._save(run, EntryResult(EntryStatus.PENDING, request.key, plan),
                             fingerprint)
            pending = await self.state.get(PENDING, request.account, [])
            await self.state.put(PENDING, request.account, [*pending, request.key])
            guard = self._guard(request.account)
            result = await self._run(guard, run, first=True)
            await self._finish(guard, run, result, fingerprint)
            return result

    @contextlib.asynccontextmanager
    async def _key_lock(self, record_key: str) -> AsyncIterator[None]:
        """One request per key at a time; the lock goes once nobody holds or waits for it
        (the record in the state store, not the lock, is what answers a later repeat)."""
        held = self._keys.get(record_key)
        if held is None:
            held = self._keys[record_key] = _KeyLock()
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._keys[record_key]

    def cut_short(self, account: str, symbol: str) -> bool:
        """A close of `symbol` is coming: a limit entry resting there cancels its unfilled
        rest now (verified gone, as at its timeout) and protects what filled, then lets the
        close have the symbol. True: one was running."""
        resting = self._resting.get((account, symbol))
        if resting is None:
            return False
        self._cut_ended.pop((account, symbol), None)  # an earlier cut's answer is not this one's
        resting.cut = True
        return True

    def resting(self) -> list[tuple[str, str]]:
        """(account, symbol) of every limit entry running now."""
        return sorted(self._resting)

    async def cancel_resting(self, account: str, symbol: str) -> EntryResult | None:
        """A close of `symbol` with no position to close: the limit entry resting there cancels
        its unfilled rest now (`cut_short`) and this waits until it let go of the symbol. Its
        result says what filled (NOT_FILLED: nothing; PROTECTED: a fill, under its stop).
        None: no limit entry runs there."""
        resting = self._resting.get((account, symbol))
        if resting is None or not self.cut_short(account, symbol):
            return None
        await resting.ended.wait()
        return resting.result

    def cut_ended(self, account: str, symbol: str) -> OrderReport | None:
        """The limit entry order a cut ended, as the venue showed it gone (once)."""
        return self._cut_ended.pop((account, symbol), None)

    def _cut(self, ctx: AccountContext, run: _Run) -> bool:
        resting = self._resting.get((ctx.account, run.plan.symbol))
        return resting is not None and resting.cut

    async def _run(self, guard: AccountGuard, run: _Run, *, first: bool) -> EntryResult:
        if run.plan.limit_price is None:
            return await self._run_steps(guard, run, first=first)
        key = (guard.account, run.plan.symbol)  # one writer per symbol: one entry at a time
        resting = self._resting[key] = _Resting()
        try:
            resting.result = await self._run_steps(guard, run, first=first)
            return resting.result
        finally:
            if self._resting.get(key) is resting:  # a later entry there may have its own
                del self._resting[key]
            resting.ended.set()

    async def _run_steps(self, guard: AccountGuard, run: _Run, *, first: bool) -> EntryResult:
        """The entry as the symbol's writer. A venue that keeps failing a read (past the
        retries) interrupts it: the continuation is tried again (it never re-sends the entry);
        still failing, the entry stays pending (the next start resumes it; the supervisor
        guards the position meanwhile)."""
        pause = ROLLBACK_PAUSE
        error = ""
        for attempt in range(CONTINUE_ATTEMPTS):
            try:
                if first and attempt == 0:
                    return await guard.as_writer(run.plan.symbol,
                                                 lambda ctx: self._enter(ctx, run), entry=run.key)
                return await guard.as_writer(run.plan.symbol,
                                             lambda ctx: self._continue(ctx, run), entry=run.key)
            except VenueError as exc:
                error = f"{type(exc).__name__}: {exc}"
                await self.clock.sleep(pause)
                pause *= 2
            except AccountHalted as exc:  # no commands now (but a limit's rest): resumed later
                return EntryResult(EntryStatus.PENDING, run.key, run.plan,
                                   detail=f"halted: {exc}")
        return EntryResult(EntryStatus.PENDING, run.key, run.plan,
                           detail=f"venue failing: {error}")

    async def resume(self, only: str | None = None) -> list[EntryResult]:
        """After a restart: bring every pending entry (of one account, or all) to protected or
        verified flat. Never sends an entry order again."""
        results = []
        for account, guard in self._guards.items():
            if only is not None and account != only:
                continue
            for key in list(await self.state.get(PENDING, account, [])):
                record = await self.record(account, key)
                if record is None:
                    continue
                run = _run_from(record)
                result = await self._run(guard, run, first=False)
                await self._finish(guard, run, result, record["fingerprint"])
                results.append(result)
        return results

    def source_of(self, account: str, symbol: str, generation: int | None) -> EntrySource:
        raw = self._sources.get(account, {}).get(f"{symbol}|{generation}")
        return EntrySource(raw) if raw else EntrySource.HAND

    # --- the steps (run as the symbol's writer) ------------------------------------------------
    async def _enter(self, ctx: AccountContext, run: _Run) -> EntryResult:
        plan = run.plan
        there = ctx.view.position(plan.symbol)
        if there is not None:  # appeared since the gates looked
            return _refused(run.key, gates.open_refusal(plan, there.side), plan)
        if self._cut(ctx, run):  # a close of the symbol came while it waited for the symbol
            return await self._not_filled(ctx, run, "a /close of the symbol came before the "
                                          "limit was sent; nothing was sent")
        request = MarketOrderRequest(plan.symbol, plan.side.entry_side, plan.qty, False,
                                     run.entry_cid,
                                     stop_loss=plan.stop_price if plan.attached else None,
                                     limit_price=plan.limit_price)
        intent = ev.EntryIntent(
            account=ctx.account, symbol=plan.symbol, key=run.key, client_id=run.entry_cid,
            side=plan.side, qty=plan.qty, stop_price=plan.stop_price, attached=plan.attached,
            source=run.source.value, by=run.by)
        try:
            order = await ctx.orders.enter(request, intent, self.bus.publish)
        except Rejected as exc:
            return await self._not_filled(ctx, run, f"{exc.reason.value} {exc.message}".strip())
        except AccountHalted as exc:
            return await self._not_filled(ctx, run, f"halted: {exc}")
        if order is not None and order.is_resting and plan.limit_price is not None:
            return await self._rest_limit(ctx, run, order, None)
        if (order is not None and order.status is OrderStatus.FILLED and order.qty
                and not plan.attached):
            return await self._protect_fill(ctx, run, order, order.qty)
        return await self._continue(ctx, run, order)

    async def _protect_fill(self, ctx: AccountContext, run: _Run, order: OrderReport,
                            qty: Decimal) -> EntryResult:
        """The venue answered "filled": the stop goes at once, sized to what filled (no look at
        the position first: that would cost a snapshot's round trips while it is naked). A
        fresh snapshot afterwards says what the position is; the supervisor resizes the stop
        if more filled meanwhile."""
        plan = run.plan
        filled_at = ctx.clock.monotonic()
        await self.bus.publish(ev.EntryFilled(account=ctx.account, symbol=plan.symbol,
                                              key=run.key, order_id=order.order_id, qty=qty))
        stop, reason = await self._place_stop(ctx, run, plan.side, qty, filled_at)
        ttp = _seconds_since(ctx, filled_at)  # the stop rests (or not) from here
        snapshot = await self._snapshot(ctx)
        position = snapshot.position(plan.symbol)
        if position is not None and position.side is not plan.side:
            position = None
        if position is not None:
            ctx.view.set_position(plan.symbol, position)
        if stop is None:
            # Not shown (REST may lag the fill) is not flat: close what filled, reduce-only,
            # and let a fresh snapshot say flat.
            return await self._rollback(ctx, run, position or _filled(plan, qty, ctx), reason)
        return await self._protected(ctx, run, stop, position, qty, ttp)

    async def _protected(self, ctx: AccountContext, run: _Run, stop: OrderReport,
                         position: PositionReport | None, qty: Decimal,
                         ttp: Decimal) -> EntryResult:
        plan = run.plan
        qty = position.qty if position is not None else qty
        entry = position.entry_price if position is not None else plan.mark
        await self.bus.publish(ev.EntryProtected(
            account=ctx.account, symbol=plan.symbol, key=run.key, side=plan.side, qty=qty,
            entry_price=entry, stop_price=stop.trigger_price or plan.stop_price,
            time_to_protect=ttp, source=run.source.value))
        return EntryResult(EntryStatus.PROTECTED, run.key, plan, qty,
                           position.entry_price if position is not None else None,
                           stop.order_id, ttp)

    async def _continue(self, ctx: AccountContext, run: _Run,
                        order: OrderReport | None = None) -> EntryResult:
        """From "the entry may have been sent" on: see what filled, protect it or roll back."""
        plan = run.plan
        if order is None:
            order = await retry_transient(lambda: ctx.venue.find_order(plan.symbol, run.entry_cid),
                                          ctx.clock, rng=ctx.rng)
        if order is not None and order.is_resting and plan.limit_price is not None:
            # a restart while the limit rests: carry on with whatever stop it already has
            snapshot = await self._snapshot(ctx)
            return await self._rest_limit(ctx, run, order,
                                          _resting_stop(snapshot, plan.symbol, plan.side))
        snapshot, position = await self._look(ctx, plan, order)
        if position is None:
            if order is None or order.status is not OrderStatus.FILLED:
                return await self._not_filled(ctx, run, "the venue shows no fill")
            # Filled, yet flat after a few looks: closed meanwhile (a rollback before a crash,
            # a stop, by hand). Whatever still rests there is the guard's sweep's to cancel
            # once its grace is over: a lagging snapshot must never cancel a live stop.
            return EntryResult(EntryStatus.CLOSED, run.key, plan, order.qty or ZERO,
                               detail="filled, then flat before it could be protected")
        filled_at = ctx.clock.monotonic()
        ctx.view.set_position(plan.symbol, position)
        await self.bus.publish(ev.EntryFilled(
            account=ctx.account, symbol=plan.symbol, key=run.key,
            order_id=order.order_id if order else "", qty=position.qty))
        stop = _resting_stop(snapshot, position.symbol, position.side)
        reason = ""
        ttp = Decimal(0)  # attached: it rested before the fill showed
        if stop is None:
            stop, reason = await self._place_stop(ctx, run, position.side, position.qty,
                                                  filled_at)
            ttp = _seconds_since(ctx, filled_at)
        else:
            ctx.view.set_order(stop)
        if stop is not None:
            return await self._protected(ctx, run, stop, position, position.qty, ttp)
        return await self._rollback(ctx, run, position, reason)

    async def _look(self, ctx: AccountContext, plan: EntryPlan, order: OrderReport | None
                    ) -> tuple[VenueSnapshot, PositionReport | None]:
        """A fresh snapshot and our side's position in it; a fill the snapshot does not show
        yet (REST lags) is looked for again before it is taken for flat."""
        for attempt in range(LOOKS):
            snapshot = await self._snapshot(ctx)
            position = snapshot.position(plan.symbol)
            if position is not None and position.side is not plan.side:
                position = None  # not ours to protect here: the guard owns whatever that is
            if position is not None or order is None or attempt == LOOKS - 1:
                return snapshot, position
            await ctx.clock.sleep(LOOK_PAUSE)
        raise AssertionError("unreachable")

    async def _rest_limit(self, ctx: AccountContext, run: _Run, order: OrderReport,
                          stop: OrderReport | None) -> EntryResult:
        """A limit entry on the book: each fill seen is protected at once (the stop placed for
        the first, resized for each further one; an attached stop rides in with the first).
        At the timeout the unfilled rest is cancelled and must be gone from the venue; then the
        stop is sized to the final fill, or, nothing filled, the entry ends flat, no stop."""
        plan = run.plan
        expires = (datetime.fromisoformat(run.expires_at) if run.expires_at
                   else ctx.clock.now())
        lot = ctx.venue.market(plan.symbol).lot
        covered = ZERO if stop is None else (stop.qty or order.filled_qty)
        first_fill: float | None = None
        ttp = Decimal(0)
        while True:
            if ctx.halted:  # no stop, no close now: only the rest's cancel goes
                return await self._halt_rest(ctx, run, order)
            filled = order.filled_qty
            if filled > covered and not plan.attached:
                if first_fill is None:
                    first_fill = ctx.clock.monotonic()
                await self.bus.publish(ev.EntryFilled(
                    account=ctx.account, symbol=plan.symbol, key=run.key,
                    order_id=order.order_id, qty=filled))
                fresh, reason = await self._cover(ctx, run, stop, filled, first_fill,
                                                  int(filled / lot))
                if fresh is None and stop is None:  # the first fill cannot be protected
                    if ctx.halted:
                        continue  # refused for the HALT: no rollback close either
                    if order.is_resting:
                        order = await self._cancel_rest(ctx, run, order)
                    _snapshot, position = await self._look(ctx, plan, order)
                    return await self._rollback(
                        ctx, run, position or _filled(plan, order.filled_qty, ctx), reason)
                if fresh is not None:
                    if stop is None:
                        ttp = _seconds_since(ctx, first_fill)
                    stop, covered = fresh, filled
            if not order.is_resting:
                break
            left = (expires - ctx.clock.now()).total_seconds()
            if left <= 0 or self._cut(ctx, run):  # its timeout, or a /close of the symbol
                order = await self._cancel_rest(ctx, run, order)
                continue  # protect what filled up to the cancel, then end
            order = await self._next_look(ctx, run, order, min(LIMIT_POLL_SECONDS, left))
        snapshot = await self._snapshot(ctx)
        position = snapshot.position(plan.symbol)
        if position is None or position.side is not plan.side:
            if order.filled_qty == 0:
                return await self._not_filled(ctx, run, "the limit did not fill before " + (
                    "a /close or /cancel_all of the symbol" if run.cut else "its timeout")
                    + "; the order is cancelled")
            return EntryResult(EntryStatus.CLOSED, run.key, plan, order.filled_qty,
                               detail="filled, then flat before it could be protected")
        ctx.view.set_position(plan.symbol, position)
        stop = _resting_stop(snapshot, plan.symbol, plan.side) or stop
        if stop is None:  # a fill no order report showed (filled not said): protect it now
            at = ctx.clock.monotonic()
            stop, reason = await self._place_stop(ctx, run, plan.side, position.qty, at,
                                                  int(position.qty / lot))
            ttp = _seconds_since(ctx, at)
            if stop is None:
                return await self._rollback(ctx, run, position, reason)
        else:
            ctx.view.set_order(stop)
        # the supervisor's ensure, run as the entry lets go, sizes the stop to the position
        return await self._protected(ctx, run, stop, position, position.qty, ttp)

    async def _next_look(self, ctx: AccountContext, run: _Run, order: OrderReport,
                         seconds: float) -> OrderReport:
        """The resting limit, as the stream tells it (the view, in memory, looked at every
        VIEW_PAUSE: a fill is protected as soon as it is streamed), else as the venue answers
        after `seconds` (no stream, or a stream that lags)."""
        plan = run.plan
        waited = 0.0
        while waited < seconds:
            step = min(VIEW_PAUSE, seconds - waited)
            await ctx.clock.sleep(step)
            waited += step
            if self._cut(ctx, run) or ctx.halted:
                return order  # a close waits, or a HALT came: the rest is cancelled now
            seen = next((o for o in ctx.view.orders(plan.symbol)
                         if o.client_id == run.entry_cid), None)
            if seen is not None and seen.filled_qty > order.filled_qty:
                return seen
            held = ctx.view.position(plan.symbol)
            if held is not None and held.side is plan.side and held.qty > order.filled_qty:
                # the position grew before the order's own update: what shows has filled
                return replace(order, filled=min(held.qty, order.qty or held.qty))
        found = await retry_transient(
            lambda: ctx.venue.find_order(plan.symbol, run.entry_cid), ctx.clock, rng=ctx.rng)
        return found or order

    async def _cover(self, ctx: AccountContext, run: _Run, stop: OrderReport | None,
                     qty: Decimal, first_fill: float, seq: int
                     ) -> tuple[OrderReport | None, str]:
        """A stop for `qty`: placed, or the one resting resized (amended in place, else the new
        one placed before the old is cancelled: never unprotected while replacing). A resize
        that fails keeps the old stop: the supervisor sizes it when the entry lets go."""
        plan = run.plan
        if stop is not None and stop.covers(qty):
            return stop, ""
        if stop is not None and ctx.venue.capabilities.amend_stop_in_place:
            try:
                amended = await ctx.orders.amend_stop(
                    stop, stop.trigger_price or plan.stop_price, qty, self.bus.publish)
            except (VenueError, AccountHalted):
                amended = None
            if amended is not None and amended.is_resting:
                return amended, ""
        fresh, reason = await self._place_stop(ctx, run, plan.side, qty, first_fill, seq)
        if fresh is None or stop is None:
            return fresh, reason
        try:
            await ctx.orders.cancel(stop, ev.CancelReason.REPLACED, self.bus.publish)
        except (VenueError, AccountHalted) as exc:  # a duplicate now: the supervisor ends it
            await self._step(ctx, run, "old_stop_left", f"{stop.order_id}: {exc}")
        return fresh, ""

    async def _cancel_rest(self, ctx: AccountContext, run: _Run,
                           order: OrderReport) -> OrderReport:
        """Cancel a limit entry's unfilled rest and see it gone from the venue: the order as
        it ended (with its final fill). A rest still resting after its cancel is an unknown
        outcome: the continuation looks again."""
        plan = run.plan
        run.cut = self._cut(ctx, run)
        reason = (ev.CancelReason.ENTRY_CUT if run.cut else ev.CancelReason.ENTRY_HALT
                  if ctx.halted else ev.CancelReason.ENTRY_TIMEOUT)
        # sent on HALT too: it only reduces exposure (OrderGateway.cancel_entry_rest)
        await ctx.orders.cancel_entry_rest(order, reason, self.bus.publish)
        found = await retry_transient(
            lambda: ctx.venue.find_order(plan.symbol, run.entry_cid), ctx.clock, rng=ctx.rng)
        if found is not None and found.is_resting:
            raise OutcomeUnknown(f"limit entry {order.order_id} still rests after its cancel")
        ended = found or replace(order, status=OrderStatus.CANCELLED)
        if run.cut:
            self._cut_ended[(ctx.account, plan.symbol)] = ended
        await self._step(ctx, run, "limit_cancelled", f"{ended.order_id} filled "
                         f"{ended.filled_qty} of {ended.qty}")
        return ended

    async def _halt_rest(self, ctx: AccountContext, run: _Run,
                         order: OrderReport) -> EntryResult:
        """HALT while the limit rests: its unfilled rest is cancelled (the one command HALT
        still sends), and nothing else is: no stop, no close. Nothing filled: the entry ends.
        Something filled: it stays pending for after /resume (a stop placed before the HALT
        stays). A cancel that fails leaves the order resting: a critical alert names it, so a
        person cancels it on the venue."""
        plan = run.plan
        if order.is_resting:
            try:
                order = await self._cancel_rest(ctx, run, order)
            except VenueError as exc:
                await self.bus.publish(ev.EntryRestLeft(
                    account=ctx.account, symbol=plan.symbol, key=run.key,
                    order_id=order.order_id, side=plan.side,
                    price=order.price or plan.limit_price,
                    qty=(order.qty or plan.qty) - order.filled_qty,
                    reason=f"{type(exc).__name__}: {exc}"))
                raise AccountHalted(f"{ctx.halted}; limit entry {order.order_id} still rests: "
                                    f"{exc}") from exc
        if order.filled_qty == 0:
            return await self._not_filled(ctx, run, f"HALT ({ctx.halted}): the resting limit "
                                          "was cancelled before anything filled")
        raise AccountHalted(f"{ctx.halted}; the limit is cancelled, {order.filled_qty} filled")

    async def _place_stop(self, ctx: AccountContext, run: _Run, side: PositionSide,
                          qty: Decimal, filled_at: float, seq: int = 0
                          ) -> tuple[OrderReport | None, str]:
        """The stop for what filled, through the one order path; (None, why) when it cannot
        rest within the budget. `seq` numbers the stops of one entry (a limit entry's resizes)."""
        plan = run.plan
        reason = ""
        for attempt in range(STOP_ATTEMPTS):
            cid = client_order_id(ctx.account, plan.symbol, run.seed, OrderPurpose.STOP,
                                  seq * STOP_ATTEMPTS + attempt)
            request = StopRequest(plan.symbol, side, qty, plan.stop_price, cid)
            try:
                order = await ctx.orders.place_stop(request, ev.StopAction.PLACE,
                                                    self.bus.publish)
            except Rejected as exc:
                return None, f"stop rejected: {exc.reason.value} {exc.message}".strip()
            except AccountHalted as exc:
                return None, f"halted: {exc}"
            except (Transient, OutcomeUnknown) as exc:
                reason = f"stop not confirmed: {exc}"
            else:
                if order.is_resting:
                    return order, ""
                reason = f"stop {order.status.value} at once"
            if ctx.clock.monotonic() - filled_at >= STOP_BUDGET_SECONDS:
                break
        return None, reason

    async def _rollback(self, ctx: AccountContext, run: _Run, position: PositionReport,
                        reason: str) -> EntryResult:
        plan = run.plan
        await self._step(ctx, run, "start", reason)
        pause = ROLLBACK_PAUSE
        last_error = ""
        for attempt in range(ROLLBACK_ATTEMPTS):
            if ctx.halted:
                last_error = f"halted: {ctx.halted}"
                break
            cid = client_order_id(ctx.account, plan.symbol, run.seed, OrderPurpose.CLOSE, attempt)
            request = MarketOrderRequest(plan.symbol, position.side.close_side, position.qty,
                                         True, cid)
            # A snapshot's silence counts as flat only after the venue took a close (or said
            # there is nothing left to reduce): REST may not show a young position yet.
            closed = False
            try:
                await ctx.orders.close(request, ev.CloseReason.ROLLBACK, "entry",
                                       self.bus.publish)
                await self._step(ctx, run, "close_sent", cid)
                closed = True
            except Rejected as exc:
                last_error = f"{exc.reason.value} {exc.message}".strip()
                closed = exc.reason is RejectReason.REDUCE_ONLY_REJECTED
                if not closed:
                    await self._step(ctx, run, "close_failed", last_error)
            except (Transient, OutcomeUnknown) as exc:
                last_error = str(exc)
                await self._step(ctx, run, "close_failed", last_error)
            except AccountHalted as exc:
                last_error = f"halted: {exc}"
                break
            try:
                snapshot = await self._snapshot(ctx)
            except VenueError as exc:
                last_error = f"snapshot: {exc}"
            else:
                now = snapshot.position(plan.symbol)
                if closed and (now is None or now.side is not position.side):
                    return await self._verified_flat(ctx, run, snapshot, reason, position.qty,
                                                     position)
                if now is not None and now.side is position.side:
                    position = now  # still open (partly closed, or the close never ran)
            await ctx.clock.sleep(pause)
            pause *= 2
        # Even the close failed: a person must act. No more commands; the supervisor adopts
        # the position (on HALT it only records it) and the SLA alert stays loud.
        await ctx.halt(f"{plan.symbol}: rollback of entry {run.key} failed: {last_error}")
        await self.bus.publish(ev.EntryRollbackFailed(
            account=ctx.account, symbol=plan.symbol, key=run.key, reason=reason,
            qty=position.qty, attempts=ROLLBACK_ATTEMPTS))
        return EntryResult(EntryStatus.ROLLBACK_FAILED, run.key, plan, position.qty,
                           position.entry_price, detail=f"{reason}; close: {last_error}")

    async def _verified_flat(self, ctx: AccountContext, run: _Run, snapshot: VenueSnapshot,
                             reason: str, qty: Decimal,
                             position: PositionReport | None) -> EntryResult:
        """The venue shows the symbol flat: cancel what is left on it, then say so once."""
        plan = run.plan
        ctx.view.set_position(plan.symbol, None)
        await self._step(ctx, run, "flat_verified", snapshot.taken_at.isoformat())
        for order in snapshot.orders:
            if order.symbol != plan.symbol or not order.is_resting or ctx.halted:
                continue
            if not is_protective_order(order):
                continue
            try:
                await ctx.orders.cancel(order, ev.CancelReason.POSITION_CLOSED, self.bus.publish)
                await self._step(ctx, run, "leftover_cancelled", order.order_id)
            except (VenueError, AccountHalted) as exc:  # a zombie now: the guard's sweep ends it
                await self._step(ctx, run, "leftover_left", f"{order.order_id}: {exc}")
        pnl = None
        if position is not None:
            realized, _exit = ctx.realized_since(plan.symbol, None)
            pnl = realized if realized is not None else (
                (position.mark_price - position.entry_price) * position.qty * position.side.sign
                - plan.fee_estimate)
            await self.bus.publish(ev.EntryRolledBack(
                account=ctx.account, symbol=plan.symbol, key=run.key, reason=reason, qty=qty,
                pnl=pnl))
        return EntryResult(EntryStatus.ROLLED_BACK, run.key, plan, qty,
                           position.entry_price if position else None, detail=reason, pnl=pnl)

    async def _not_filled(self, ctx: AccountContext, run: _Run, detail: str) -> EntryResult:
        await self.bus.publish(ev.EntryFilled(account=ctx.account, symbol=run.plan.symbol,
                                              key=run.key, order_id="", qty=ZERO))
        return EntryResult(EntryStatus.NOT_FILLED, run.key, run.plan, detail=detail)

    # --- helpers -------------------------------------------------------------------------------
    async def _step(self, ctx: AccountContext, run: _Run, step: str, detail: str) -> None:
        await self.bus.publish(ev.EntryRollbackStep(
            account=ctx.account, symbol=run.plan.symbol, key=run.key, step=step, detail=detail))

    @staticmethod
    async def _snapshot(ctx: AccountContext) -> VenueSnapshot:
        snapshot = await retry_transient(ctx.venue.snapshot, ctx.clock, rng=ctx.rng)
        ctx.metrics.venue_calls.labels(ctx.account, "snapshot").inc(snapshot.calls)
        return snapshot

    async def _finish(self, guard: AccountGuard, run: _Run, result: EntryResult,
                      fingerprint: str) -> None:
        await self._save(run, result, fingerprint)
        if result.status is EntryStatus.PENDING:
            return
        if result.status in (EntryStatus.PROTECTED, EntryStatus.ROLLBACK_FAILED):
            generation = next((p.generation for p in guard.positions()
                               if p.symbol == run.plan.symbol), None)
            sources = self._sources.setdefault(guard.account, {})
            sources[f"{run.plan.symbol}|{generation}"] = run.source.value
            await self.state.put(SOURCE_SCOPE, guard.account, sources)
        if (result.status is EntryStatus.PROTECTED and run.plan.take_profit is not None
                and not run.cut):  # cut short for a close: no take-profit on what it closes
            # Hand-off to the exit plan (issue 12): the position's supervisor places the
            # take-profit, reduce-only and sized to the position; past the mark it is refused.
            tp = await guard.set_take_profit(run.plan.symbol,
                                             PriceSpec(PriceKind.PRICE, run.plan.take_profit))
            if tp.status is not TakeProfitStatus.SET:  # the requester hears why it is not set
                await self.bus.publish(ev.TakeProfitRejected(
                    account=guard.account, symbol=run.plan.symbol,
                    trigger_price=run.plan.take_profit, reason=tp.status.value,
                    message=f"mark {tp.mark}" if tp.mark is not None else ""))
        pending = await self.state.get(PENDING, guard.account, [])
        await self.state.put(PENDING, guard.account, [k for k in pending if k != run.key])

    async def _save(self, run: _Run, result: EntryResult, fingerprint: str) -> None:
        await self.state.put(SCOPE, _record_key(run.plan.account, run.key), {
            "fingerprint": fingerprint, "source": run.source.value, "by": run.by,
            "entry_cid": run.entry_cid, "seed": run.seed, "plan": _plain(asdict(run.plan)),
            "expires_at": run.expires_at,
            "result": _plain({k: v for k, v in asdict(result).items() if k != "plan"})})

    async def note_close(self, event: ev.Event) -> None:
        """Bus subscriber: a stop-out streak per symbol starts a cool-down (gates)."""
        if not isinstance(event, ev.PositionClosed) or event.realized_pnl is None:
            return
        key = f"{event.account}|{event.symbol}"
        streak = await self.state.get("stop_outs", key, {"count": 0, "at": None})
        if event.realized_pnl < 0 and event.reason is ev.CloseReason.ON_VENUE:
            streak = {"count": streak["count"] + 1, "at": event.at.isoformat()}
        else:
            streak = {"count": 0, "at": None}
        await self.state.put("stop_outs", key, streak)

    async def _cool_down_left(self, account: str, symbol: str) -> float:
        streak = await self.state.get("stop_outs", f"{account}|{symbol}")
        if not streak or streak["count"] < self.limits.stop_out_streak or not streak["at"]:
            return 0.0
        since = (self.clock.now() - datetime.fromisoformat(streak["at"])).total_seconds()
        return max(self.limits.cool_down_seconds - since, 0.0)

    def _guard(self, account: str) -> AccountGuard:
        guard = self._guards.get(account)
        if guard is None:
            raise EntryRefused(Refusal.BAD_REQUEST, f"unknown account {account}")
        return guard


def _filled(plan: EntryPlan, qty: Decimal, ctx: AccountContext) -> PositionReport:
    """What the entry's answer says is open, while the venue's snapshot does not show it."""
    return PositionReport(symbol=plan.symbol, side=plan.side, qty=qty, entry_price=plan.mark,
                          mark_price=plan.mark, unrealized_pnl=ZERO, opened_at=None,
                          updated_at=ctx.clock.now())


def _seconds_since(ctx: AccountContext, start: float) -> Decimal:
    return Decimal(str(round(ctx.clock.monotonic() - start, 3)))


def _resting_stop(snapshot: VenueSnapshot, symbol: str, side: PositionSide
                  ) -> OrderReport | None:
    return next((o for o in snapshot.orders
                 if o.symbol == symbol and o.is_resting and o.is_stop_for(side)), None)


def _refused(key: str, exc: EntryRefused, plan: EntryPlan | None = None) -> EntryResult:
    return EntryResult(EntryStatus.REFUSED, key, plan, refusal=exc.reason, detail=exc.detail)


def _fingerprint(request: EntryRequest) -> str:
    parts = (request.account, request.symbol.upper(), request.side.value,
             request.size.kind.value, str(request.size.value), request.stop.kind.value,
             str(request.stop.value), str(request.take_profit))
    if request.limit_price is not None:  # market requests keep the fingerprints they had
        parts = (*parts, f"limit {request.limit_price}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """JSON-ready: Decimals as text (never floats), enums as their values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def _dec(raw: str | None) -> Decimal | None:
    return Decimal(raw) if raw is not None else None


def _plan_from(raw: dict[str, Any]) -> EntryPlan:
    return EntryPlan(
        account=raw["account"], symbol=raw["symbol"], side=PositionSide(raw["side"]),
        qty=Decimal(raw["qty"]), mark=Decimal(raw["mark"]),
        stop_price=Decimal(raw["stop_price"]), take_profit=_dec(raw["take_profit"]),
        notional=Decimal(raw["notional"]), risk=Decimal(raw["risk"]),
        fee_estimate=Decimal(raw["fee_estimate"]), attached=raw["attached"],
        limit_price=_dec(raw.get("limit_price")), limit_timeout=raw.get("limit_timeout", 0.0))


def _run_from(record: dict[str, Any]) -> _Run:
    return _Run(record["result"]["key"], _plan_from(record["plan"]),
                EntrySource(record["source"]), record["by"], record["entry_cid"],
                record["seed"], record.get("expires_at"))


def _result_from(record: dict[str, Any]) -> EntryResult:
    r = record["result"]
    return EntryResult(
        status=EntryStatus(r["status"]), key=r["key"], plan=_plan_from(record["plan"]),
        filled_qty=Decimal(r["filled_qty"]), entry_price=_dec(r["entry_price"]),
        stop_order_id=r["stop_order_id"], time_to_protect=_dec(r["time_to_protect"]),
        refusal=Refusal(r["refusal"]) if r["refusal"] else None, detail=r["detail"],
        pnl=_dec(r["pnl"]), notes=tuple(r["notes"]))


def _record_key(account: str, key: str) -> str:
    return f"{account}|{key}"
