"""reconcile() and plan_position(): the pure function, one test per case of issue #3."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine.domain.ids import OrderPurpose, client_order_id
from engine.domain.position import GuardedPosition, StopRef
from engine.domain.reports import MarketInfo, OrderKind, OrderReport, OrderStatus, PositionReport
from engine.domain.values import OrderSide, PositionSide
from engine.protection.policy import CrossedPolicy, FixedDistancePricer, ProtectionPolicy
from engine.protection.reconcile import (
    AdoptPosition,
    AdoptStop,
    CancelStop,
    CancelZombie,
    ClosePosition,
    PlaceStop,
    RecordClose,
    Resized,
    ResizeStop,
    ZombieClock,
    orphans,
    pick_stop,
    plan_position,
    reconcile,
)

D = Decimal
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
MARKETS = {BTC: MarketInfo(BTC, D("0.1"), D("0.001"), D("0.001")),
           ETH: MarketInfo(ETH, D("0.01"), D("0.01"), D("0.01"))}
POLICY = ProtectionPolicy(FixedDistancePricer(D(2), {ETH: D(5)}))
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


def pos(symbol: str = BTC, side: PositionSide = LONG, qty: str = "0.5", entry: str = "60000",
        mark: str = "60000") -> PositionReport:
    return PositionReport(symbol=symbol, side=side, qty=D(qty), entry_price=D(entry),
                          mark_price=D(mark), unrealized_pnl=D(0), opened_at=NOW, updated_at=NOW)


def order(oid: str, price: str | None = "58800", *, symbol: str = BTC,
          side: OrderSide = OrderSide.SELL, qty: str | None = "0.5",
          kind: OrderKind = OrderKind.STOP_LOSS, client_id: str | None = None,
          reduce_only: bool = True, status: OrderStatus = OrderStatus.OPEN) -> OrderReport:
    return OrderReport(order_id=oid, client_id=client_id, symbol=symbol, kind=kind, side=side,
                       qty=D(qty) if qty is not None else None,
                       trigger_price=D(price) if price is not None else None,
                       reduce_only=reduce_only, status=status, updated_at=NOW)


def known(symbol: str = BTC, side: PositionSide = LONG, qty: str = "0.5",
          stop: OrderReport | None = None, entry: str = "60000") -> GuardedPosition:
    ref = StopRef(stop.order_id, stop.client_id, stop.trigger_price,  # type: ignore[arg-type]
                  stop.qty) if stop else None
    return GuardedPosition(account="a", symbol=symbol, side=side, qty=D(qty),
                           entry_price=D(entry), generation=1, stop=ref, opened_at=NOW)


def plan(k: GuardedPosition | None, report: PositionReport | None,
         orders: list[OrderReport], policy: ProtectionPolicy = POLICY) -> list[object]:
    symbol = (report or k).symbol  # type: ignore[union-attr]
    return plan_position(k, report, orders, MARKETS[symbol], policy)


# --- position without a stop ------------------------------------------------------------------
def test_unprotected_long_gets_a_stop_at_the_default_distance_sized_to_it() -> None:
    assert plan(known(), pos(), []) == [PlaceStop(BTC, D(58800), D("0.5"))]


def test_short_stop_sits_above_entry_with_the_per_symbol_distance() -> None:
    report = pos(ETH, SHORT, "2", entry="3200", mark="3200")
    assert plan(known(ETH, SHORT, "2", entry="3200"), report, []) == [
        PlaceStop(ETH, D(3360), D(2))]  # 5 % for ETH, not the default 2 %


def test_stop_price_is_rounded_on_the_tick_toward_the_market() -> None:
    long_stop = plan(known(entry="60000.37"), pos(entry="60000.37"), [])[0]
    short_stop = plan(known(side=SHORT, entry="60000.37"),
                      pos(side=SHORT, entry="60000.37"), [])[0]
    # 2 % of 60000.37 = 1200.0074: the long's 58800.3626 rounds up, the short's 61200.3774 down
    assert long_stop.trigger_price == D("58800.4")  # type: ignore[attr-defined]
    assert short_stop.trigger_price == D("61200.3")  # type: ignore[attr-defined]


def test_the_last_stop_we_knew_wins_over_the_distance() -> None:
    k = known()
    k.stop = StopRef("9", "vgs", D(59500), D("0.5"))
    assert plan(k, pos(), []) == [PlaceStop(BTC, D(59500), D("0.5"))]


def test_take_profits_and_wrong_side_stops_do_not_count_as_protection() -> None:
    orders = [order("1", "62000", kind=OrderKind.TAKE_PROFIT),
              order("2", "61000", side=OrderSide.BUY, reduce_only=False)]
    assert plan(known(), pos(), orders) == [PlaceStop(BTC, D(58800), D("0.5"))]


def test_a_stop_that_is_not_reduce_only_is_not_protection() -> None:
    """Issue 15 finding 6: a stop-and-reverse entry (a plain, not reduce-only stop on the close
    side, here twice the size) is no protective stop: we place our own and leave it alone."""
    reverse = order("8", "59000", qty="1.0", reduce_only=False)
    assert not reverse.is_stop_for(LONG)
    assert plan(known(), pos(), [reverse]) == [PlaceStop(BTC, D(58800), D("0.5"))]
    assert plan(None, pos(), [reverse]) == [AdoptPosition(pos()),
                                            PlaceStop(BTC, D(58800), D("0.5"))]


def test_reduce_only_and_whole_position_stops_are_protection() -> None:
    """Issue 15 finding 6, the other side: reduce-only or close-position (no qty) still counts."""
    assert order("1", reduce_only=True).is_stop_for(LONG)
    assert order("2", qty=None, reduce_only=False).is_stop_for(LONG)  # closePosition / pos_loss
    assert not order("3", reduce_only=True).is_stop_for(SHORT)  # wrong side
    assert not order("4", kind=OrderKind.TAKE_PROFIT).is_stop_for(LONG)


# --- stop already crossed -----------------------------------------------------------------------
def test_crossed_stop_closes_by_default() -> None:
    actions = plan(known(), pos(mark="58000"), [])
    assert actions == [ClosePosition(BTC, D("0.5"), "stop_crossed", D(58800), D(58000))]


def test_a_re_entry_after_a_stop_out_is_priced_from_its_own_entry() -> None:
    """Issue 15 finding 10: our stop at 58800 fired, the trader re-entered long at 58500 before
    we looked again. The remembered stop is crossed for the new position: it gets a stop 2 %
    under its own entry, it is not market-closed."""
    k = known(stop=order("5", "58800"))
    reentered = pos(qty="0.3", entry="58500", mark="58500")
    assert plan(k, reentered, []) == [Resized(BTC, D("0.5"), D("0.3"), D(58500)),
                                      PlaceStop(BTC, D(57330), D("0.3"))]
    short = known(side=SHORT, stop=order("6", "61200", side=OrderSide.BUY))
    assert plan(short, pos(side=SHORT, entry="61500", mark="61500"), []) == [
        PlaceStop(BTC, D(62730), D("0.5"))]


def test_a_re_entry_whose_own_stop_is_crossed_too_is_still_closed() -> None:
    """Issue 15 finding 10: pricing from the new entry does not bypass the crossed policy."""
    k = known(stop=order("5", "58800"))
    assert plan(k, pos(entry="58500", mark="57000"), []) == [
        ClosePosition(BTC, D("0.5"), "stop_crossed", D(57330), D(57000))]


def test_a_crossed_remembered_stop_on_the_same_entry_still_closes() -> None:
    """The same position (same entry) whose stop vanished and was crossed keeps the old rule."""
    k = known(stop=order("5", "59500"))
    assert plan(k, pos(mark="59000"), []) == [
        ClosePosition(BTC, D("0.5"), "stop_crossed", D(59500), D(59000))]


def test_no_second_close_or_racing_stop_while_a_close_is_in_flight() -> None:
    closing = known()
    closing.close_pending_until = NOW + timedelta(seconds=15)
    in_flight = plan_position(closing, pos(mark="58000"), [], MARKETS[BTC], POLICY, NOW)
    assert in_flight == []
    assert plan_position(closing, pos(), [], MARKETS[BTC], POLICY, NOW) == []
    later = NOW + timedelta(seconds=16)  # the close never showed: protect (or close) again
    (action,) = plan_position(closing, pos(mark="58000"), [], MARKETS[BTC], POLICY, later)
    assert isinstance(action, ClosePosition)


def test_a_stop_exactly_at_the_mark_counts_as_crossed() -> None:
    (action,) = plan(known(), pos(mark="58800"), [])
    assert isinstance(action, ClosePosition)


def test_crossed_stop_with_tighten_policy_places_just_off_the_mark() -> None:
    policy = replace(POLICY, crossed=CrossedPolicy.TIGHTEN)
    (action,) = plan(known(), pos(mark="58000"), [], policy)
    assert isinstance(action, PlaceStop)
    assert action.crossed_from == D(58800)
    assert action.trigger_price == D("57884.0")  # 58000 - 0.2 %, on the tick
    assert action.trigger_price < D(58000)

    (short,) = plan(known(side=SHORT), pos(side=SHORT, mark="62000"), [], policy)
    assert isinstance(short, PlaceStop) and short.trigger_price == D("62124.0")


@pytest.mark.parametrize("side", [LONG, SHORT])
@pytest.mark.parametrize("mark", ["100.00", "100.005", "100.009", "99.991", "0.05"])
@pytest.mark.parametrize("buffer", ["0", "0.0001", "0.2", "3"])
def test_tighten_rounds_strictly_on_the_safe_side_of_the_mark(side: PositionSide, mark: str,
                                                              buffer: str) -> None:
    policy = replace(POLICY, tighten_buffer_percent=D(buffer))
    market = MarketInfo("X/USDT:USDT", D("0.01"), D(1), D(1))
    price = policy.tightened(side, D(mark), market)
    assert price % market.tick == 0, "on the tick"
    assert price > 0
    if side is LONG:
        assert price < D(mark)
    else:
        assert price > D(mark)
    # and never further away than the buffer plus one tick
    assert abs(price - D(mark)) <= D(mark) * D(buffer) / 100 + market.tick


# --- position size changed ---------------------------------------------------------------
@pytest.mark.parametrize("new_qty", ["0.8", "0.2"])
def test_size_change_resizes_the_stop(new_qty: str) -> None:
    stop = order("7", client_id="vgsX")
    actions = plan(known(stop=stop), pos(qty=new_qty), [stop])
    assert actions == [Resized(BTC, D("0.5"), D(new_qty), D(60000)),
                       ResizeStop(BTC, stop, D(new_qty))]


def test_a_close_position_stop_without_qty_covers_any_size() -> None:
    stop = order("7", qty=None)
    assert plan(known(qty="0.5", stop=stop), pos(qty="0.9"), [stop]) == [
        Resized(BTC, D("0.5"), D("0.9"), D(60000))]


def test_protected_position_needs_nothing() -> None:
    stop = order("7")
    assert plan(known(stop=stop), pos(), [stop]) == []


# --- more than one stop -------------------------------------------------------------------
def test_keeps_ours_by_order_id_and_cancels_the_rest() -> None:
    ours = order("5", "58000")
    other = order("6", "59000")  # more protective, but not ours
    actions = plan(known(stop=ours), pos(), [other, ours])
    assert actions == [CancelStop(BTC, other, "duplicate")]


def test_keeps_ours_by_client_id_when_the_order_id_changed() -> None:
    ours = order("5", "58000", client_id="vgs00000000000000000001")
    k = known(stop=ours)
    moved = replace(ours, order_id="55")
    other = order("6", "59000")
    actions = plan(k, pos(), [other, moved])
    assert actions == [AdoptStop(BTC, moved), CancelStop(BTC, other, "duplicate")]


def test_without_ours_the_most_protective_is_kept() -> None:
    low, high = order("5", "57000"), order("6", "59000")
    assert plan(known(), pos(), [low, high]) == [AdoptStop(BTC, high),
                                                 CancelStop(BTC, low, "duplicate")]
    s_low, s_high = (order("8", "61000", side=OrderSide.BUY),
                     order("9", "63000", side=OrderSide.BUY))
    assert plan(known(side=SHORT), pos(side=SHORT), [s_high, s_low]) == [
        AdoptStop(BTC, s_low), CancelStop(BTC, s_high, "duplicate")]


def test_pick_stop_rules() -> None:
    a, b, c = order("1", "57000"), order("2", "59000"), order("3", "59000")
    assert pick_stop([a, b], StopRef("1", None, D(57000), None), LONG) is a
    assert pick_stop([a, b], StopRef("x", "cid", D(57000), None), LONG) is b  # unknown: protective
    assert pick_stop([a, b], None, LONG) is b
    assert pick_stop([a, b], None, SHORT) is a
    # ties break deterministically, whatever the order they come in
    assert pick_stop([b, c], None, LONG) is pick_stop([c, b], None, LONG)


def test_pick_stop_prefers_a_stop_with_our_client_id_when_we_lost_track_of_it() -> None:
    """After a lost response or a crash before saving, our own stop is on the venue but not in
    the journal: keep it rather than a hand-placed one (issue #3: 'keep ours')."""
    ours = order("4", "58000", client_id=client_order_id("a", BTC, 1, OrderPurpose.STOP, 0))
    theirs = order("5", "59000")
    assert pick_stop([theirs, ours], None, LONG) is ours
    actions = plan(known(), pos(), [theirs, ours])
    assert actions == [AdoptStop(BTC, ours), CancelStop(BTC, theirs, "duplicate")]


# --- position the journal does not know ---------------------------------------------------
def test_unknown_position_is_adopted_and_protected() -> None:
    assert plan(None, pos(), []) == [AdoptPosition(pos()), PlaceStop(BTC, D(58800), D("0.5"))]


def test_unknown_position_with_a_hand_stop_adopts_the_stop() -> None:
    hand_stop = order("3", "59000", qty="0.5")
    assert plan(None, pos(), [hand_stop]) == [AdoptPosition(pos()), AdoptStop(BTC, hand_stop)]


# --- position gone from the venue ---------------------------------------------------------
def test_gone_position_records_the_close_and_cancels_protective_leftovers() -> None:
    stop = order("5")
    tp = order("6", "62000", kind=OrderKind.TAKE_PROFIT)
    entry = order("7", None, kind=OrderKind.LIMIT, side=OrderSide.BUY, reduce_only=False)
    assert plan(known(stop=stop), None, [stop, tp, entry]) == [RecordClose(BTC, (stop, tp))]


def test_nothing_known_and_nothing_open_is_nothing() -> None:
    assert plan_position(None, None, [], MARKETS[BTC], POLICY) == []


def test_flip_through_zero_closes_the_old_and_adopts_the_new() -> None:
    old_stop = order("5")  # the long's sell stop: useless on the short
    actions = plan(known(stop=old_stop), pos(side=SHORT, qty="0.3", mark="60000"), [old_stop])
    assert actions == [RecordClose(BTC, (old_stop,)), AdoptPosition(pos(side=SHORT, qty="0.3")),
                       PlaceStop(BTC, D(61200), D("0.3"))]


# --- whole-account reconcile, zombies and their grace -------------------------------------
def test_reconcile_covers_every_symbol_and_lists_the_unprotected() -> None:
    stop = order("1")
    result = reconcile({BTC: known(stop=stop)}, {BTC: pos(), ETH: pos(ETH, qty="1", entry="3000")},
                       [stop], MARKETS, NOW, POLICY)
    assert result.unprotected == (ETH,)
    assert result.actions == (AdoptPosition(pos(ETH, qty="1", entry="3000")),
                              PlaceStop(ETH, D(2850), D(1)))
    assert result.for_symbol(BTC) == () and result.symbols() == {ETH}


def test_closed_orders_in_the_list_are_ignored() -> None:
    gone = order("1", status=OrderStatus.CANCELLED)
    result = reconcile({}, {BTC: pos()}, [gone], MARKETS, NOW, POLICY)
    assert PlaceStop(BTC, D(58800), D("0.5")) in result.actions


def test_zombie_is_cancelled_only_after_the_grace_period() -> None:
    zombie = order("9", symbol=ETH, price="3000", side=OrderSide.BUY)
    tp_zombie = order("10", symbol=ETH, price="2000", kind=OrderKind.TAKE_PROFIT,
                      side=OrderSide.BUY)
    plain_limit = order("11", None, symbol=ETH, kind=OrderKind.LIMIT, reduce_only=False)
    orders = [zombie, tp_zombie, plain_limit]
    clock = ZombieClock()
    grace = timedelta(seconds=POLICY.zombie_grace_seconds)

    first = reconcile({}, {}, orders, MARKETS, NOW, POLICY, clock.first_seen)
    assert first.actions == () and first.zombie_candidates == {"9", "10"}
    clock.update(first.zombie_candidates, NOW)

    almost = reconcile({}, {}, orders, MARKETS, NOW + grace - timedelta(seconds=1), POLICY,
                       clock.first_seen)
    assert almost.actions == ()
    clock.update(almost.zombie_candidates, NOW + grace - timedelta(seconds=1))
    assert clock.first_seen == {"9": NOW, "10": NOW}  # the first sighting is what counts

    due = reconcile({}, {}, orders, MARKETS, NOW + grace, POLICY, clock.first_seen)
    assert due.actions == (CancelZombie(zombie), CancelZombie(tp_zombie))


def test_zombie_grace_counts_from_the_venues_creation_time() -> None:
    """A one-shot check sees each order once: the venue's creation time makes an old orphan
    overdue on first sight; a young one waits; without a creation time, first-seen counts."""
    old = replace(order("9", symbol=ETH, price="3000", side=OrderSide.BUY),
                  created_at=NOW - timedelta(minutes=10))
    young = replace(order("10", symbol=ETH, price="3000", side=OrderSide.BUY),
                    created_at=NOW - timedelta(seconds=5))
    unknown = order("11", symbol=ETH, price="3000", side=OrderSide.BUY)
    # A venue clock running ahead never makes an order younger than when we first saw it.
    ahead = replace(order("12", symbol=ETH, price="3000", side=OrderSide.BUY),
                    created_at=NOW + timedelta(minutes=5))
    first_seen = {"12": NOW - timedelta(seconds=40)}
    result = reconcile({}, {}, [old, young, unknown, ahead], MARKETS, NOW, POLICY, first_seen)
    assert result.actions == (CancelZombie(old), CancelZombie(ahead))
    assert [(o.order.order_id, o.age.total_seconds(), o.overdue) for o in orphans(
        [old, young, unknown, ahead], set(), first_seen, NOW, POLICY.zombie_grace_seconds)] == [
        ("10", 5, False), ("11", 0, False), ("12", 40, True), ("9", 600, True)]
    assert orphans([old], {ETH}, {}, NOW, 30) == []  # a position's stop is no orphan


def test_zombie_grace_restarts_when_a_position_came_and_went() -> None:
    zombie = order("9")
    clock = ZombieClock()
    clock.update(reconcile({}, {}, [zombie], MARKETS, NOW, POLICY).zombie_candidates, NOW)
    later = NOW + timedelta(seconds=10)
    with_position = reconcile({}, {BTC: pos()}, [zombie], MARKETS, later, POLICY,
                              clock.first_seen)
    assert with_position.zombie_candidates == frozenset()
    clock.update(with_position.zombie_candidates, later)
    assert clock.first_seen == {}
    much_later = NOW + timedelta(seconds=35)
    again = reconcile({}, {}, [zombie], MARKETS, much_later, POLICY, clock.first_seen)
    assert again.actions == ()  # first seen (again) now: a fresh grace


def test_known_symbol_is_never_a_zombie_even_when_flat() -> None:
    stop = order("5")
    result = reconcile({BTC: known(stop=stop)}, {}, [stop], MARKETS, NOW + timedelta(hours=1),
                       POLICY, {"5": NOW})
    assert result.actions == (RecordClose(BTC, (stop,)),)
    assert result.zombie_candidates == frozenset()


def test_reduce_only_orders_on_the_entry_side_are_cancelled_as_useless() -> None:
    """E.g. a flip whose leftover cancel failed: a long's sell stop resting under a short."""
    stale = order("5")  # sell, reduce-only
    entry_stop = order("6", "59000", reduce_only=False)  # a stop-entry: the user's, not ours
    ours = order("7", "61200", side=OrderSide.BUY, qty="0.3")
    actions = plan(known(side=SHORT, qty="0.3", stop=ours), pos(side=SHORT, qty="0.3"),
                   [stale, entry_stop, ours])
    assert actions == [CancelStop(BTC, stale, "wrong_side")]
