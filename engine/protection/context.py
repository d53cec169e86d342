"""What a position supervisor needs from its account, in one object, with narrow callbacks
instead of calls back up into the guard (so supervisor.py never imports guard.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import events as ev
from engine.domain.position import GuardedPosition
from engine.metrics import Metrics
from engine.pacing import no_pacing
from engine.ports import PositionStore, StateStore, Venue
from engine.protection.orders import AccountFlags, OrderGateway
from engine.protection.policy import ProtectionPolicy
from engine.protection.view import AccountView


class ExitHooks(Protocol):
    """What a supervisor tells the account's exit plans (engine/exits/book.py) around a move."""

    async def before_move(self, known: GuardedPosition, price: Decimal) -> None: ...

    def after_move(self, symbol: str, price: Decimal, done: bool) -> None: ...

    async def forget(self, symbol: str) -> None: ...

    async def resized(self, known: GuardedPosition) -> None: ...

    async def check_resumed(self, known: GuardedPosition, entry_price: Decimal,
                            stop_rests: bool) -> ev.ExitPlanDropped | None: ...


Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]
Realized = Callable[[str, datetime | None], tuple[Decimal | None, Decimal | None]]


@dataclass(slots=True)
class AccountContext:
    account: str
    venue: Venue  # reads only (market rules, snapshots); commands go through `orders`
    view: AccountView
    orders: OrderGateway
    flags: AccountFlags
    clock: Clock
    bus: EventBus
    store: PositionStore
    state: StateStore
    policy: ProtectionPolicy
    metrics: Metrics
    rng: random.Random
    started_at: datetime
    spawn: Spawn
    halt: Callable[[str], Awaitable[None]]
    # Realized PnL and exit price of a symbol from streamed fills since a time.
    realized_since: Realized
    # A supervisor with nothing left to guard tells its owner (symbol).
    retire: Callable[[str, object], None]
    # Trailing / breakeven plans (None: the stop stays where it was placed).
    exits: ExitHooks | None = None
    # Awaited before each event a supervisor publishes: thousands of supervisors ready in one
    # loop turn take turns instead of holding the loop (engine/pacing.py).
    pace: Callable[[], Awaitable[None]] = no_pacing

    @property
    def halted(self) -> str | None:
        return self.flags.halted
