"""reconcile(journal state, venue snapshot, now) -> actions: a pure function, no I/O.

The guard runs it over a whole account to find what needs attention; each supervisor runs the
per-position part (`plan_position`) again on the freshest view right before acting, so a stale
plan can never make it act twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from engine.domain.ids import OrderPurpose, has_purpose, is_ours
from engine.domain.position import GuardedPosition, StopRef
from engine.domain.reports import MarketInfo, OrderKind, OrderReport, PositionReport
from engine.domain.values import PositionSide, conservative_stop, take_profit_on_tick
from engine.protection.policy import CrossedPolicy, ProtectionPolicy


# --- actions ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AdoptPosition:
    position: PositionReport


@dataclass(frozen=True, slots=True)
class RecordClose:
    symbol: str
    leftovers: tuple[OrderReport, ...]  # our symbol's resting stops/reduce-only, to cancel


@dataclass(frozen=True, slots=True)
class Resized:
    symbol: str
    old_qty: Decimal
    new_qty: Decimal
    entry_price: Decimal  # the venue's average entry now: an add moves it (breakeven's base)


@dataclass(frozen=True, slots=True)
class PlaceStop:
    symbol: str
    trigger_price: Decimal
    qty: Decimal
    crossed_from: Decimal | None = None  # set when tightened because the wanted stop was crossed


@dataclass(frozen=True, slots=True)
class AdoptStop:
    symbol: str
    order: OrderReport


@dataclass(frozen=True, slots=True)
class ResizeStop:
    symbol: str
    order: OrderReport
    qty: Decimal


@dataclass(frozen=True, slots=True)
class MoveStop:
    """Tighten the stop (the pricer released a better price), sized to the position."""

    symbol: str
    order: OrderReport
    trigger_price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class CancelStop:
    symbol: str
    order: OrderReport
    reason: str  # duplicate | wrong_side


@dataclass(frozen=True, slots=True)
class PlaceTakeProfit:
    """The exit plan's reduce-only take-profit, sized to the position (never protection)."""

    symbol: str
    trigger_price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class CancelTakeProfit:
    """One of our take-profits that is not the plan's (off, another price or size, a second)."""

    symbol: str
    order: OrderReport
    reason: str  # take_profit_off | replaced | duplicate


@dataclass(frozen=True, slots=True)
class ClosePosition:
    symbol: str
    qty: Decimal
    reason: str
    stop_price: Decimal | None = None
    mark_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class CancelZombie:
    order: OrderReport


Action = (AdoptPosition | RecordClose | Resized | PlaceStop | AdoptStop | ResizeStop | CancelStop
          | ClosePosition | CancelZombie | MoveStop | PlaceTakeProfit | CancelTakeProfit)


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    actions: tuple[Action, ...]
    zombie_candidates: frozenset[str]  # order ids seen on flat symbols (grace clock runs)
    unprotected: tuple[str, ...]
    # Actions by symbol, in order, built once: `for_symbol` runs once per symbol.
    _by_symbol: dict[str, tuple[Action, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_symbol: dict[str, list[Action]] = {}
        for action in self.actions:
            by_symbol.setdefault(_symbol_of(action), []).append(action)
        object.__setattr__(self, "_by_symbol", {s: tuple(a) for s, a in by_symbol.items()})

    def symbols(self) -> set[str]:
        return set(self._by_symbol)

    def for_symbol(self, symbol: str) -> tuple[Action, ...]:
        return self._by_symbol.get(symbol, ())


def _symbol_of(action: Action) -> str:
    if isinstance(action, AdoptPosition):
        return action.position.symbol
    if isinstance(action, CancelZombie):
        return action.order.symbol
    return action.symbol


# --- the pure functions -----------------------------------------------------------------------
def pick_stop(stops: list[OrderReport], known: StopRef | None,
              side: PositionSide) -> OrderReport:
    """Keep ours: the one the journal knows (by order id, then client id), else one carrying our
    client id (placed before a lost response or a crash); otherwise the most protective one."""
    if known is not None:
        for order in stops:
            if order.order_id == known.order_id:
                return order
        for order in stops:
            if known.client_id and order.client_id == known.client_id:
                return order
    candidates = [o for o in stops if is_ours(o.client_id)] or stops
    # Most protective: highest stop for a long, lowest for a short; ties by order id for
    # determinism.
    return max(candidates, key=lambda o: ((o.trigger_price or 0) * side.sign, o.order_id))


def is_protective_order(order: OrderReport) -> bool:
    return order.kind is OrderKind.STOP_LOSS or order.reduce_only


def plan_position(known: GuardedPosition | None, report: PositionReport | None,
                  orders: list[OrderReport], market: MarketInfo,
                  policy: ProtectionPolicy, now: datetime | None = None) -> list[Action]:
    """Actions for one symbol. `orders` are the resting orders on that symbol."""
    if report is None:
        if known is None:
            return []
        leftovers = tuple(o for o in orders if is_protective_order(o))
        return [RecordClose(known.symbol, leftovers)]

    actions: list[Action] = []
    # Reduce-only orders on the entry side can never reduce this position: leftovers of an
    # earlier one on the other side (a flip), whose cancel may have failed before.
    useless = [o for o in orders if o.reduce_only and o.side is not report.side.close_side]
    if known is not None and known.side is not report.side:
        # Flipped through zero between two looks: the old position closed, a new one opened.
        actions.append(RecordClose(known.symbol, tuple(useless)))
        useless = []
        known = None
    elif (known is not None and known.opened_at is not None and report.opened_at is not None
          and report.opened_at != known.opened_at):
        # Closed and re-opened on the same side between two looks (venues that report when a
        # position opened tell us): record the close; the resting stops protect the new one.
        actions.append(RecordClose(known.symbol, ()))
        known = None
    elif known is not None and known.flat_after_stop:
        # Our stop fired and a position on the same side is open: a re-entry, not the old one.
        actions.append(RecordClose(known.symbol, ()))
        known = None
    if known is None:
        actions.append(AdoptPosition(report))
    elif known.qty != report.qty:
        actions.append(Resized(report.symbol, known.qty, report.qty, report.entry_price))
    # Orders that can never reduce this position go last: protecting it comes first, and a
    # cancel the venue leaves unanswered must not hold the stop back.
    cleanup = [CancelStop(report.symbol, o, "wrong_side") for o in useless]

    stops = [o for o in orders if o.is_stop_for(report.side)]
    known_stop = known.stop if known is not None else None
    closing = (known is not None and known.close_pending_until is not None
               and now is not None and now < known.close_pending_until)
    if not stops:
        if closing and known is not None and not known.close_filled and (
                known.close_from_qty is None or report.qty == known.close_from_qty):
            return actions + cleanup  # a close in flight, its fill not seen: no stop racing it
        # (Closing but the size moved: the close filled; what is left gets its stop now.)
        last = known_stop.trigger_price if known_stop is not None else None
        if (last is not None and known is not None and report.entry_price != known.entry_price
                and policy.is_crossed(report.side, last, report.mark_price)):
            # Issue 15 finding 10: ccxt positions carry no open time, so a same-side re-entry
            # after our stop fired looks like the old position. A crossed stop on a position
            # with another entry is the one that fired: price from the new entry instead.
            last = None
        wanted = conservative_stop(policy.pricer.desired_stop(report, last), report.side,
                                   market.tick)
        if policy.is_crossed(report.side, wanted, report.mark_price):
            if policy.crossed is CrossedPolicy.CLOSE and not closing:  # never a second close
                actions.append(ClosePosition(report.symbol, report.qty, "stop_crossed",
                                             wanted, report.mark_price))
            else:
                actions.append(PlaceStop(
                    report.symbol, policy.tightened(report.side, report.mark_price, market),
                    report.qty, crossed_from=wanted))
        else:
            actions.append(PlaceStop(report.symbol, wanted, report.qty))
        return actions + cleanup

    keep = pick_stop(stops, known_stop, report.side)
    # Adopt the keeper before cancelling the duplicates: the position is protected now, and a
    # cancel the venue refuses or leaves unanswered must not keep it "unprotected" in the
    # journal until an SLA alert (issue 15 chaos: rest-only-200ms-harsh seed 735).
    if known_stop is None or keep.order_id != known_stop.order_id:
        actions.append(AdoptStop(report.symbol, keep))
    actions.extend(CancelStop(report.symbol, o, "duplicate") for o in stops if o is not keep)
    moved = moved_stop(keep, report, market, policy)
    if moved is not None:  # one amend moves and resizes
        qty = keep.qty if keep.covers(report.qty) and keep.qty is not None else report.qty
        actions.append(MoveStop(report.symbol, keep, moved, qty))
    elif not keep.covers(report.qty):
        actions.append(ResizeStop(report.symbol, keep, report.qty))
    # The take-profit only once the stop rests: protection first, always.
    return actions + cleanup + plan_take_profit(report, orders, market, policy)


def is_our_take_profit(order: OrderReport, side: PositionSide) -> bool:
    """Our take-profit for a position on `side` (a person's own TP is not ours to manage)."""
    return order.is_take_profit_for(side) and has_purpose(order.client_id, OrderPurpose.TAKE_PROFIT)


def plan_take_profit(report: PositionReport, orders: list[OrderReport], market: MarketInfo,
                     policy: ProtectionPolicy) -> list[Action]:
    """Our take-profit (told by its client id; a person's own TP is left alone): exactly one at
    the plan's price, sized to the position, or none. A change is cancel-then-place: a TP is not
    protection, so there is no gap to avoid, and two reduce-only orders never over-close."""
    wanted = policy.take_profits.take_profit(report.symbol) if policy.take_profits else None
    ours = sorted((o for o in orders if is_our_take_profit(o, report.side)),
                  key=lambda o: o.order_id)
    if wanted is None:
        return [CancelTakeProfit(report.symbol, o, "take_profit_off") for o in ours]
    wanted = take_profit_on_tick(wanted, report.side, market.tick)
    fits = [o for o in ours if o.trigger_price == wanted and o.qty == report.qty]
    keep = fits[0] if fits else None
    actions: list[Action] = [
        CancelTakeProfit(report.symbol, o, "duplicate" if fits else "replaced")
        for o in ours if o is not keep]
    if keep is None and not actions and not take_profit_reached(report.side, wanted,
                                                                report.mark_price):
        # Placed only while the mark has not reached it: past it, it would fill at once (the
        # /tp that set it was refused then; a mark that ran through it since waits to return).
        actions.append(PlaceTakeProfit(report.symbol, wanted, report.qty))
    return actions


def take_profit_reached(side: PositionSide, price: Decimal, mark: Decimal) -> bool:
    """The mark is at or past the take-profit (placing it now would fill at once)."""
    return mark >= price if side is PositionSide.LONG else mark <= price


def moved_stop(keep: OrderReport, report: PositionReport, market: MarketInfo,
               policy: ProtectionPolicy) -> Decimal | None:
    """Where the pricer wants a resting stop moved: only tighter, never through the mark."""
    current = keep.trigger_price
    if current is None:
        return None
    raw = policy.pricer.desired_stop(report, current)
    if (raw - current) * report.side.sign <= 0:  # compared before rounding: an off-tick hand
        return None                                # stop is not "moved" by the rounding alone
    wanted = conservative_stop(raw, report.side, market.tick)
    if (wanted - current) * report.side.sign <= 0 or policy.is_crossed(
            report.side, wanted, report.mark_price):
        return None
    return wanted


def reconcile(known: Mapping[str, GuardedPosition], positions: Mapping[str, PositionReport],
              orders: list[OrderReport], markets: Mapping[str, MarketInfo], now: datetime,
              policy: ProtectionPolicy,
              zombie_first_seen: Mapping[str, datetime] | None = None) -> ReconcileResult:
    """Whole-account reconcile over one consistent view. Pure: the caller does all I/O."""
    zombie_first_seen = zombie_first_seen or {}
    by_symbol: dict[str, list[OrderReport]] = {}
    for order in orders:
        if order.is_resting:
            by_symbol.setdefault(order.symbol, []).append(order)

    actions: list[Action] = []
    unprotected: list[str] = []
    candidates: set[str] = set()
    grace = timedelta(seconds=policy.zombie_grace_seconds)
    for symbol in sorted(set(known) | set(positions) | set(by_symbol)):
        report = positions.get(symbol)
        symbol_orders = by_symbol.get(symbol, [])
        if report is None and symbol not in known:
            for order in symbol_orders:
                if not is_protective_order(order):
                    continue
                candidates.add(order.order_id)
                if zombie_age(order, zombie_first_seen, now) >= grace:
                    actions.append(CancelZombie(order))
            continue
        planned = plan_position(known.get(symbol), report, symbol_orders, markets[symbol], policy,
                                now)
        if any(isinstance(a, PlaceStop | ClosePosition) for a in planned):
            unprotected.append(symbol)
        actions.extend(planned)
    return ReconcileResult(tuple(actions), frozenset(candidates), tuple(unprotected))


def zombie_age(order: OrderReport, first_seen: Mapping[str, datetime],
               now: datetime) -> timedelta:
    """How long an orphaned order has existed: from the venue's creation time (a one-shot
    `vigil check` sees it only once), else from when we first saw it. The earlier of the two,
    so a venue clock running ahead never stretches the grace past the first-seen rule."""
    since = first_seen.get(order.order_id, now)
    if order.created_at is not None:
        since = min(since, order.created_at)
    return max(now - since, timedelta(0))


@dataclass(frozen=True, slots=True)
class Orphan:
    """A protective order resting on a flat symbol, and whether its grace is over."""

    order: OrderReport
    age: timedelta
    overdue: bool


def orphans(orders: list[OrderReport], position_symbols: set[str],
            first_seen: Mapping[str, datetime], now: datetime, grace_seconds: float
            ) -> list[Orphan]:
    """The zombie candidates among `orders` (what `reconcile` would cancel once overdue), with
    their ages: what `vigil check` reports after its pass."""
    grace = timedelta(seconds=grace_seconds)
    found = []
    for order in sorted(orders, key=lambda o: (o.symbol, o.order_id)):
        if (order.is_resting and is_protective_order(order)
                and order.symbol not in position_symbols):
            age = zombie_age(order, first_seen, now)
            found.append(Orphan(order, age, age >= grace))
    return found


@dataclass(slots=True)
class ZombieClock:
    """Remembers when each candidate zombie was first seen (the fallback for venues that do not
    say when an order was created; see `zombie_age`); forgets ones no longer candidates."""

    first_seen: dict[str, datetime] = field(default_factory=dict)

    def update(self, candidates: frozenset[str], now: datetime) -> None:
        self.first_seen = {oid: self.first_seen.get(oid, now) for oid in candidates}
