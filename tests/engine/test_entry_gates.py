"""Sizing and the risk gates: exactly what will be sent, and each refusal with its own reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import pytest

from engine.domain import events as ev
from engine.domain.reports import MarketInfo
from engine.domain.values import PositionSide
from engine.entries import gates, sizing
from engine.entries.gates import AccountPicture, RiskLimits
from engine.entries.model import (
    Amount,
    EntryPlan,
    EntryRefused,
    EntryRequest,
    EntrySource,
    EntryStatus,
    PriceKind,
    PriceSpec,
    Refusal,
    SizeKind,
)
from engine.entries.service import EntryService
from tests.engine.conftest import ACCOUNT, BTC, RigFactory, drive

MARKET = MarketInfo(BTC, D("0.1"), D("0.001"), D("0.001"), D("5"))
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


USD_500 = Amount(SizeKind.NOTIONAL, D(500))
SL_2 = PriceSpec(PriceKind.PERCENT, D(2))


def plan(size: Amount = USD_500, stop: PriceSpec = SL_2, side: PositionSide = LONG,
         equity: D | None = D(10_000), take_profit: PriceSpec | None = None) -> EntryPlan:
    return sizing.plan_entry(account=ACCOUNT, symbol=BTC, side=side, size=size, stop=stop,
                             take_profit=take_profit, market=MARKET, mark=D(65000),
                             equity=equity, fee_rate=D("0.0006"), attached=False)


def test_sizes_round_down_on_the_lot_and_the_stop_never_loosens() -> None:
    p = plan()
    assert (p.qty, p.stop_price, p.notional) == (D("0.007"), D("63700.0"), D("455.000"))
    assert p.risk == D("9.100") and p.fee_estimate == D("0.54")
    assert plan(Amount(SizeKind.QTY, D("0.0109"))).qty == D("0.010")
    # risk 10 USDT at a 1,300 stop distance: 0.00769 -> 0.007
    assert plan(Amount(SizeKind.RISK, D(10))).qty == D("0.007")
    # 1 % of 10,000 equity = 100 USDT at risk
    assert plan(Amount(SizeKind.RISK_PERCENT, D(1))).qty == D("0.076")
    short = plan(side=SHORT, stop=PriceSpec(PriceKind.PRICE, D("66000.05")))
    assert short.stop_price == D("66000.0")  # a short's stop rounds down (tighter)
    assert plan(take_profit=PriceSpec(PriceKind.PERCENT, D(4))).take_profit == D("67600.0")


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"stop": PriceSpec(PriceKind.PRICE, D(66000))}, Refusal.STOP_WRONG_SIDE),
    ({"take_profit": PriceSpec(PriceKind.PRICE, D(64000))}, Refusal.TAKE_PROFIT_WRONG_SIDE),
    ({"side": SHORT, "stop": PriceSpec(PriceKind.PRICE, D(66000)),
      "take_profit": PriceSpec(PriceKind.PRICE, D(66000))}, Refusal.TAKE_PROFIT_WRONG_SIDE),
    ({"side": SHORT, "stop": PriceSpec(PriceKind.PRICE, D(64000))}, Refusal.STOP_WRONG_SIDE),
    ({"size": Amount(SizeKind.NOTIONAL, D(3))}, Refusal.BELOW_MIN),
    ({"size": Amount(SizeKind.QTY, D(0))}, Refusal.BAD_REQUEST),
    ({"size": Amount(SizeKind.RISK_PERCENT, D(1)), "equity": None}, Refusal.BAD_REQUEST),
    ({"stop": PriceSpec(PriceKind.PERCENT, D(100))}, Refusal.STOP_TOO_FAR),
])
def test_sizing_refuses_with_a_reason(kwargs: dict, reason: Refusal) -> None:
    with pytest.raises(EntryRefused) as caught:
        plan(**kwargs)
    assert caught.value.reason is reason and caught.value.detail


CLEAR = AccountPicture(hold=None, halted=None, pnl_today=D(0), open_positions=0,
                       open_notional=D(0), symbol_open=False, equity=D(10_000),
                       cool_down_left=0.0)


@pytest.mark.parametrize(("limits", "picture", "stop", "reason"), [
    ({}, {"halted": "bad keys"}, "2", Refusal.HALT),
    ({}, {"hold": "by admin"}, "2", Refusal.HOLD),
    ({"daily_loss_limit": D(100)}, {"pnl_today": D(-100)}, "2", Refusal.DAILY_LOSS),
    ({}, {"cool_down_left": 600.0}, "2", Refusal.COOL_DOWN),
    ({}, {"symbol_open": True}, "2", Refusal.POSITION_OPEN),
    ({}, {"symbol_open": True, "open_side": SHORT}, "2", Refusal.OPPOSITE_POSITION),
    ({"max_open_positions": 2}, {"open_positions": 2}, "2", Refusal.MAX_POSITIONS),
    ({"max_position_notional": D(400)}, {}, "2", Refusal.POSITION_NOTIONAL),
    ({"max_account_notional": D(1000)}, {"open_notional": D(600)}, "2",
     Refusal.ACCOUNT_NOTIONAL),
    ({"max_leverage": D(1)}, {"open_notional": D(9800)}, "2", Refusal.LEVERAGE),
    ({"min_stop_percent": D("0.5")}, {}, "0.2", Refusal.STOP_TOO_CLOSE),
    ({"max_stop_percent": D(5)}, {}, "8", Refusal.STOP_TOO_FAR),
])
def test_each_gate_refuses_with_its_reason(limits: dict, picture: dict, stop: str,
                                           reason: Refusal) -> None:
    p = plan(stop=PriceSpec(PriceKind.PERCENT, D(stop)))
    with pytest.raises(EntryRefused) as caught:
        gates.check(p, RiskLimits(**limits), replace(CLEAR, **picture))
    assert caught.value.reason is reason
    gates.check(p, RiskLimits(), CLEAR)  # and without that limit it passes


async def test_a_stop_out_streak_cools_the_symbol_down(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    entries = EntryService({ACCOUNT: rig.guard}, limits=RiskLimits(stop_out_streak=2,
                                                                   cool_down_seconds=600),
                           state=rig.guard.state, bus=rig.guard.bus, clock=rig.clock,
                           hold_of=lambda a: None)
    request = EntryRequest(ACCOUNT, "BTCUSDT", LONG, Amount(SizeKind.NOTIONAL, D(500)),
                           PriceSpec(PriceKind.PERCENT, D(2)), "k", EntrySource.TELEGRAM)
    for _ in range(2):
        await entries.note_close(ev.PositionClosed(
            account=ACCOUNT, symbol=BTC, side=LONG, qty=D(1), entry_price=D(1),
            exit_price=D(1), realized_pnl=D(-5), reason=ev.CloseReason.ON_VENUE,
            at=rig.clock.now()))
    refused = await drive(rig.clock, entries.open(request))
    assert refused.status is EntryStatus.REFUSED and refused.refusal is Refusal.COOL_DOWN
    await rig.clock.advance(timedelta(minutes=11).total_seconds())
    opened = await drive(rig.clock, entries.open(request))
    assert opened.status is EntryStatus.PROTECTED
