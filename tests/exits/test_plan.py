"""The pure exit-plan evaluation and the book's amend limits (no I/O, a manual clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from engine.clock import ManualClock
from engine.domain.position import GuardedPosition, StopRef
from engine.domain.reports import MarketInfo, PositionReport
from engine.domain.values import PositionSide
from engine.exits.book import AmendLimits, ExitBook, ExitDefaults, TokenBucket
from engine.exits.plan import Breakeven, ExitPlan, LadderStep, Trailing, TrailState, evaluate
from engine.protection.policy import FixedDistancePricer

D = Decimal
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT
BTC = "BTC/USDT:USDT"
TRAIL = ExitPlan(trailing=Trailing(D(1), D("0.5")))


def state(side: PositionSide = LONG, entry: str = "100", **kw: object) -> TrailState:
    return TrailState(generation=1, side=side, entry=D(entry), **kw)  # type: ignore[arg-type]


def test_trailing_activates_at_the_threshold_and_follows_the_best_mark() -> None:
    s = evaluate(TRAIL, state(), D("100.9"))
    assert not s.activated and s.wanted is None
    s = evaluate(TRAIL, s, D(101))
    assert s.activated and s.best_mark == D(101) and s.wanted == D("100.495")
    s = evaluate(TRAIL, s, D(104))
    assert s.best_mark == D(104) and s.wanted == D("103.48")
    after_dip = evaluate(TRAIL, s, D(102))
    assert after_dip is s  # a worse mark changes nothing: same object, nothing to do


def test_short_trail_mirrors() -> None:
    s = evaluate(TRAIL, state(SHORT), D(99))
    assert s.activated and s.wanted == D("99.495")
    s = evaluate(TRAIL, s, D(95))
    assert s.wanted == D("95.475")
    assert evaluate(TRAIL, s, D(97)) is s


def test_breakeven_after_percent_moves_to_entry_plus_fees_and_buffer() -> None:
    plan = ExitPlan(breakeven=Breakeven(at_percent=D(2), fee_percent=D("0.1"),
                                        buffer_percent=D("0.05")))
    s = evaluate(plan, state(), D("101.99"))
    assert not s.breakeven_done
    s = evaluate(plan, s, D(102))
    assert s.breakeven_done and s.wanted == D("100.15")
    s2 = evaluate(plan, state(SHORT), D(98))
    assert s2.wanted == D("99.85")


def test_breakeven_after_r_uses_the_initial_risk() -> None:
    plan = ExitPlan(breakeven=Breakeven(at_r=D(1), fee_percent=D(0), buffer_percent=D(0)))
    s = evaluate(plan, state(risk=D(2)), D("101.9"))
    assert not s.breakeven_done
    assert evaluate(plan, s, D(102)).wanted == D(100)


def test_ladder_locks_steps_and_never_gives_one_back() -> None:
    plan = ExitPlan(ladder=(LadderStep(D(2), D("0.5")), LadderStep(D(4), D(2))))
    s = evaluate(plan, state(), D(102))
    assert s.wanted == D("100.5")
    s = evaluate(plan, s, D(104))
    assert s.wanted == D(102)
    assert evaluate(plan, s, D(103)).wanted == D(102)


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="callback"):
        Trailing(D(1), D(0))
    with pytest.raises(ValueError, match="at_percent or at_r"):
        Breakeven()


def test_token_bucket_refills_with_the_clock() -> None:
    clock = ManualClock()
    bucket = TokenBucket(2, clock)
    assert bucket.take() and bucket.take() and not bucket.take()
    clock._step_to(30.0)  # half a minute: one token back
    assert bucket.take() and not bucket.take()


def _book(limits: AmendLimits, clock: ManualClock) -> ExitBook:
    market = MarketInfo(BTC, D("0.1"), D("0.001"), D("0.001"))
    return ExitBook("paper", FixedDistancePricer(D(2)), ExitDefaults(TRAIL), limits, clock,
                    lambda _s: market)


def _known(stop: str) -> GuardedPosition:
    return GuardedPosition(account="paper", symbol=BTC, side=LONG, qty=D(1),
                           entry_price=D(100), generation=1,
                           stop=StopRef("1", "c", D(stop), D(1)))


def test_book_releases_only_past_the_minimum_step_and_interval() -> None:
    clock = ManualClock()
    book = _book(AmendLimits(min_step_percent=D("0.5"), min_interval_seconds=2), clock)
    known = _known("98")
    now = clock.now()
    assert book.on_mark(known, D(101), now)  # activates: 100.495, far above the stop
    assert book.released[BTC] == D("100.495")
    # The amend went out (persisted first), the stop rests at the released price.
    book.states[BTC] = replace(book.states[BTC], last_amend_at=now,
                               last_amend_price=D("100.495"))
    book.after_move(BTC, D("100.495"), True)
    known.stop = StopRef("1", "c", D("100.495"), D(1))
    assert not book.on_mark(known, D("101.2"), now + timedelta(seconds=5))  # < 0.5 % step
    assert not book.on_mark(known, D(102), now + timedelta(seconds=1))  # inside the interval
    assert book.on_mark(known, D(102), now + timedelta(seconds=2))
    assert book.released[BTC] == D("101.49")


def test_book_account_budget_caps_releases() -> None:
    clock = ManualClock()
    book = _book(AmendLimits(min_step_percent=D(0), min_interval_seconds=0,
                             account_per_minute=3), clock)
    released = 0
    for i in range(10):
        known = _known("50")
        known.symbol = f"S{i}"
        released += book.on_mark(known, D(110), clock.now())
    assert released == 3


def test_desired_stop_never_gives_up_a_stop_that_rested() -> None:
    clock = ManualClock()
    book = _book(AmendLimits(), clock)
    book.states[BTC] = state(last_amend_price=D(105))
    report = PositionReport(BTC, LONG, D(1), D(100), D(107), D(7), None, clock.now())
    assert book.desired_stop(report, None) == D(105)  # cancelled by hand: back at the trail
    assert book.desired_stop(report, D(106)) == D(106)  # a tighter stop stays


async def test_a_resize_moves_the_entry_only_while_breakeven_has_not_fired() -> None:
    """An add at a higher price: breakeven's base becomes the venue's average (and 1 R is
    measured from it while the first stop stands); once breakeven fired, the entry and the stop
    it asked for stay (a stop already moved never loosens)."""
    clock = ManualClock()
    book = _book(AmendLimits(), clock)
    known = _known("98")
    book.states[BTC] = state(risk=D(2))
    known.entry_price = D(105)
    await book.resized(known)
    assert book.states[BTC].entry == D(105) and book.states[BTC].risk == D(7)
    fired = state(breakeven_done=True, wanted=D("100.15"), last_amend_price=D("100.15"))
    book.states[BTC] = fired
    known.entry_price = D(110)
    await book.resized(known)
    assert book.states[BTC] is fired
