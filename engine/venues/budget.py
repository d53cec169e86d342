"""Our own request-weight budget per venue, with a priority lane for protective orders.

ccxt's client-side throttle is one FIFO leaky bucket: after a heavy read (Binance
GET /fapi/v1/openAlgoOrders without a symbol weighs 40, at 50 ms a unit) the next request, our
stop, waits two seconds. We take ccxt's place at its `throttle(cost)` hook (ccxt still computes
each endpoint's cost) and budget against the venue's documented limit over a rolling window:
reads may spend the window up to `limit - reserve`, and never ahead of a waiting priority
request; priority requests (stop placement, amend, cancel, reduce-only close, the lookup after an
unknown outcome) may spend the reserve too, so they leave at once unless the venue's own limit
is exhausted, when sending would only earn a ban.

Where the venue reports the weight it has counted (Binance's X-MBX-USED-WEIGHT-1M, which ccxt
keeps as `last_response_headers`), that figure corrects ours upwards: the limit is per IP, so
other programs on the same address spend from it too."""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.clock import Clock
from engine.results import VenueWeight


class Lane(StrEnum):
    PRIORITY = "priority"
    READ = "read"


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """`limit` weight units (ccxt cost units) per rolling `window` seconds, `reserve` of it kept
    for the priority lane."""

    limit: float
    window: float
    reserve: float
    source: str  # where the figure comes from, for the docs and /status
    used_header: str | None = None  # response header with the venue's own count of the window

    def __post_init__(self) -> None:
        if not (0 < self.reserve < self.limit and self.window > 0):
            raise ValueError(f"bad budget limits: {self}")


@dataclass(frozen=True, slots=True)
class BudgetStats:
    venue: str
    limits: BudgetLimits
    used: float  # weight spent in the current window
    spent: dict[Lane, float]  # weight spent since start, per lane
    last_weight: dict[str, float]  # the weight of the last run of each operation ("snapshot")
    priority_wait_max: float  # seconds a priority request waited for budget, at most
    read_wait_total: float  # seconds reads yielded, in total
    venue_used: float | None = None  # the venue's own count, from its last response header

    @property
    def snapshot_weight(self) -> float:
        return self.last_weight.get("snapshot", 0.0)

    def weight(self) -> VenueWeight:
        return VenueWeight(self.snapshot_weight, self.used, self.limits.limit,
                           self.limits.window)

    @property
    def min_poll_interval(self) -> float:
        """Seconds between snapshots at which snapshots alone would use up the read share."""
        share = self.limits.limit - self.limits.reserve
        return self.limits.window * self.snapshot_weight / share


@dataclass(slots=True)
class Operation:
    """One venue operation (a snapshot, a stop placement): its lane and the weight it spent."""

    name: str
    lane: Lane
    weight: float = 0.0


_CURRENT: contextvars.ContextVar[Operation | None] = contextvars.ContextVar(
    "vigil_venue_operation", default=None)


def current_operation() -> contextvars.ContextVar[Operation | None]:
    return _CURRENT


@dataclass
class RequestBudget:
    """Installed on one ccxt exchange as its `throttle`; every REST request passes here."""

    venue: str
    limits: BudgetLimits
    clock: Clock
    _window: deque[tuple[float, float]] = field(default_factory=deque, init=False)  # (at, w)
    _used: float = field(default=0.0, init=False)
    _priority_waiting: int = field(default=0, init=False)
    _spent: dict[Lane, float] = field(default_factory=lambda: dict.fromkeys(Lane, 0.0),
                                      init=False)
    _last: dict[str, float] = field(default_factory=dict, init=False)
    _priority_wait_max: float = field(default=0.0, init=False)
    _read_wait_total: float = field(default=0.0, init=False)
    _venue_used: float | None = field(default=None, init=False)
    _seen_headers: object = field(default=None, init=False)

    def install(self, exchange: Any) -> None:
        """Take the place of ccxt's throttle. ccxt calls it only with enableRateLimit on (as
        make_venue builds every exchange); an exchange built without it is not budgeted."""
        exchange.throttle = self.throttle

    async def throttle(self, cost: float | None = None) -> None:
        operation = _CURRENT.get()
        lane = operation.lane if operation is not None else Lane.READ
        weight = float(cost if cost is not None else 1)
        await self.acquire(weight, lane)
        if operation is not None:
            operation.weight += weight

    async def acquire(self, weight: float, lane: Lane) -> None:
        priority = lane is Lane.PRIORITY
        room = self.limits.limit if priority else self.limits.limit - self.limits.reserve
        started = self.clock.monotonic()
        if priority:
            self._priority_waiting += 1
        try:
            while True:
                now = self.clock.monotonic()
                self._expire(now)
                yielding = not priority and self._priority_waiting > 0
                # A single request heavier than the room still goes through an empty window.
                if not yielding and (self._used + weight <= room or not self._window):
                    break
                next_expiry = self._window[0][0] + self.limits.window - now if self._window else 0
                await self.clock.sleep(max(next_expiry, 0.0))
        finally:
            if priority:
                self._priority_waiting -= 1
        waited = self.clock.monotonic() - started
        if priority:
            self._priority_wait_max = max(self._priority_wait_max, waited)
        else:
            self._read_wait_total += waited
        self._window.append((self.clock.monotonic(), weight))
        self._used += weight
        self._spent[lane] += weight

    def finished(self, operation: Operation) -> None:
        self._last[operation.name] = operation.weight

    def stats(self) -> BudgetStats:
        self._expire(self.clock.monotonic())
        return BudgetStats(self.venue, self.limits, self._used, dict(self._spent),
                           dict(self._last), self._priority_wait_max, self._read_wait_total,
                           self._venue_used)

    def observe(self, headers: Mapping[str, str] | None) -> None:
        """Correct our count from a response's headers (ccxt's `last_response_headers`).

        Only upwards: the venue's figure includes weight we do not see (other programs on the
        IP), while a lower one may just not count our requests still in flight yet; and a window
        of our own that runs longer than the venue's fixed minute only errs on the safe side."""
        name = self.limits.used_header
        if name is None or headers is None or headers is self._seen_headers:
            return  # ccxt keeps the last response's headers: each response is read once
        self._seen_headers = headers
        raw = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
        try:
            used = float(raw) if raw is not None else None
        except ValueError:
            used = None
        if used is None or used < 0:
            return
        self._venue_used = used
        now = self.clock.monotonic()
        self._expire(now)
        if used > self._used:
            self._window.append((now, used - self._used))
            self._used = used

    def _expire(self, now: float) -> None:
        while self._window and self._window[0][0] + self.limits.window <= now:
            _, weight = self._window.popleft()
            self._used -= weight
        if not self._window:
            self._used = 0.0  # no float drift left behind
