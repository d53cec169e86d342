"""`POST /signal/{source}`: TradingView-style JSON alerts open positions with their stop, through
the same ControlService.open and risk gates as Telegram. Format: docs/SIGNALS.md.

Checks, in order, each a 4xx with a reason and nothing sent: body size, known source, rate limit,
authentication (HMAC-SHA256 of "timestamp.body" with a timestamp inside the replay window and
never seen before, or the secret itself in a header; constant-time compares), JSON, fields,
account, symbol; then the gates. The signal's `id` is the idempotency key: a retry of the same
id gets the earlier result, never a second order. Repeated failures alert the admins.

Not a server: `add_signal_routes` adds the route to the application the HTTP surface serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from aiohttp import web

from engine.bus import EventBus
from engine.clock import Clock
from engine.control import ControlService
from engine.domain import events as ev
from engine.domain.values import PositionSide
from engine.entries.model import (
    EntryPlan,
    EntryRefused,
    EntryRequest,
    EntryResult,
    EntrySource,
    EntryStatus,
)
from engine.entries.words import BadNumber, number, parse_price, parse_size
from engine.errors import Rejected
from vigil.settings import SignalsSettings

TIMESTAMP = "X-Vigil-Timestamp"  # unix seconds
SIGNATURE = "X-Vigil-Signature"  # hex HMAC-SHA256(secret, f"{timestamp}.{body}")
TOKEN = "X-Vigil-Token"  # or the secret itself (senders that cannot sign)
SIDES = {"long": PositionSide.LONG, "buy": PositionSide.LONG,
         "short": PositionSide.SHORT, "sell": PositionSide.SHORT}
FIELDS = frozenset({"account", "symbol", "side", "size", "sl", "tp", "id", "price", "type"})
ORDER_TYPES = frozenset({"market", "limit"})


CONFIRM_SCOPE = "signal_confirm"  # account|key -> the approval a large signal waits on


class SignalConfirm(Protocol):
    """Asks an admin to confirm a large signal (bot/signal_confirm.py: Telegram)."""

    async def ask(self, request: EntryRequest, plan: EntryPlan) -> str: ...  # approval id

    async def status(self, approval_id: str) -> str | None: ...  # pending, done, expired, ...


class SignalError(Exception):
    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail


@dataclass
class _SourceState:
    calls: deque[float] = field(default_factory=deque)  # monotonic times in the last minute
    seen: dict[str, float] = field(default_factory=dict)  # signature -> when (replay window)
    failures: int = 0  # in a row


class SignalEndpoint:
    def __init__(self, control: ControlService, settings: SignalsSettings, *, clock: Clock,
                 bus: EventBus, confirm: SignalConfirm | None = None) -> None:
        self.control = control
        self.settings = settings
        self.clock = clock
        self.bus = bus
        self.confirm = confirm
        self._state: dict[str, _SourceState] = {}
        self._asking = asyncio.Lock()

    async def handle(self, request: web.Request) -> web.Response:
        source = request.match_info["source"]
        try:
            body = await self._body(request)
            config = self.settings.sources.get(source)
            if config is None:
                raise SignalError(404, "unknown_source")
            state = self._state.setdefault(source, _SourceState())
            self._rate(state)
            self._authenticate(request, body, config.secret.get_secret_value(), state)
            entry = self._entry(source, body, config.account)
        except SignalError as exc:
            await self._failed(source, exc)
            return _json(exc.status, {"ok": False, "error": exc.reason, "detail": exc.detail})
        self._state[source].failures = 0
        if self.confirm is not None and self.settings.confirm_notional is not None:
            waiting = await self._wait_for_confirm(entry, self.confirm,
                                                   self.settings.confirm_notional)
            if waiting is not None:
                return waiting
        result = await self.control.open(entry)
        if result.status is EntryStatus.REFUSED:
            return _json(422, {"ok": False, "error": "refused", **_result(result)})
        return _json(200, {"ok": True, **_result(result)})

    async def _wait_for_confirm(self, entry: EntryRequest, confirm: SignalConfirm,
                                threshold: Decimal) -> web.Response | None:
        """A signal above the threshold is not sent: an admin gets a Confirm in Telegram and
        the sender a 202. The same signal again says where its approval stands; once it was
        confirmed, None: the caller's open returns that entry's result (same key)."""
        if await self.control.entries.record(entry.account, entry.key) is not None:
            return None  # this key ran (confirmed or small): open returns its earlier result
        asked = await self._asked(entry, confirm)
        if asked is not None:
            return asked
        try:  # outside the lock: a slow venue never holds up other signals
            plan = await self.control.preview_entry(entry)
        except EntryRefused as exc:
            return _json(422, {"ok": False, "error": "refused", "reason": exc.reason.value,
                               "detail": exc.detail, "key": entry.key})
        if plan.notional <= threshold:
            return None
        async with self._asking:  # one approval per signal, even for two at once
            asked = await self._asked(entry, confirm)
            if asked is not None:
                return asked
            approval = await confirm.ask(entry, plan)
            await self.control.entries.state.put(CONFIRM_SCOPE, _confirm_key(entry), approval)
        return _json(202, {"ok": True, "status": "pending_confirm", "approval": approval,
                           "key": entry.key, "symbol": plan.symbol, "qty": str(plan.qty),
                           "notional": str(plan.notional), "stop": str(plan.stop_price)})

    async def _asked(self, entry: EntryRequest, confirm: SignalConfirm) -> web.Response | None:
        """Where this signal's approval stands, if one was asked for (None: never asked)."""
        approval = await self.control.entries.state.get(CONFIRM_SCOPE, _confirm_key(entry))
        if approval is None:
            return None
        status = await confirm.status(approval)
        if status in ("pending", "executing"):
            return _json(202, {"ok": True, "status": "pending_confirm",
                               "approval": approval, "key": entry.key})
        return _json(409, {"ok": False, "error": "not_confirmed", "detail": status,
                           "approval": approval, "key": entry.key})

    # --- the checks ---------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise SignalError(413, "body_too_large", f"limit {limit} bytes")
        body = await request.content.read(limit + 1)  # a chunked body is bounded here
        if len(body) > limit:
            raise SignalError(413, "body_too_large", f"limit {limit} bytes")
        return body

    def _rate(self, state: _SourceState) -> None:
        now = self.clock.monotonic()
        while state.calls and state.calls[0] <= now - 60:
            state.calls.popleft()
        if len(state.calls) >= self.settings.rate_per_minute:
            raise SignalError(429, "rate_limited",
                              f"{self.settings.rate_per_minute} signals a minute")
        state.calls.append(now)

    def _authenticate(self, request: web.Request, body: bytes, secret: str,
                      state: _SourceState) -> None:
        token = request.headers.get(TOKEN)
        if token is not None:
            if not hmac.compare_digest(token.encode(), secret.encode()):
                raise SignalError(401, "bad_token")
            return  # replays of a token-authenticated signal are caught by its id
        stamp, signature = request.headers.get(TIMESTAMP), request.headers.get(SIGNATURE)
        if not stamp or not signature:
            raise SignalError(401, "unauthenticated", f"send {TIMESTAMP} + {SIGNATURE}")
        expected = sign(secret, stamp, body)
        if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
            raise SignalError(401, "bad_signature")
        try:
            sent = float(stamp)
        except ValueError:
            raise SignalError(401, "bad_timestamp") from None
        window = self.settings.replay_window_seconds
        age = self.clock.now().timestamp() - sent
        if abs(age) > window:
            raise SignalError(401, "stale_timestamp", f"{age:.0f} s, window {window:.0f} s")
        now = self.clock.monotonic()
        state.seen = {s: t for s, t in state.seen.items() if now - t <= 2 * window}
        if expected in state.seen:
            raise SignalError(409, "replay")
        state.seen[expected] = now

    def _entry(self, source: str, body: bytes, default_account: str | None) -> EntryRequest:
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SignalError(400, "malformed_json", str(exc)) from None
        if not isinstance(raw, dict):
            raise SignalError(400, "malformed_json", "expected an object")
        unknown = set(raw) - FIELDS
        if unknown:
            raise SignalError(400, "unknown_field", ", ".join(sorted(unknown)))
        key = _text(raw, "id")
        side = SIDES.get(_text(raw, "side").lower())
        if side is None:
            raise SignalError(400, "bad_side", "long, short, buy or sell")
        kind = _text(raw, "type").lower() if raw.get("type") is not None else None
        if kind is not None and kind not in ORDER_TYPES:
            raise SignalError(400, "bad_type", "market or limit")
        try:
            size = parse_size(_text(raw, "size"))
            stop = parse_price(_text(raw, "sl")) if raw.get("sl") is not None else None
            tp = parse_price(_text(raw, "tp")) if raw.get("tp") is not None else None
            limit = number(_text(raw, "price")) if raw.get("price") is not None else None
        except BadNumber as exc:
            raise SignalError(400, "bad_number", exc.text) from None
        if kind == "limit" and limit is None:
            raise SignalError(400, "missing_field", "price (a limit needs one)")
        if kind == "market" and limit is not None:
            raise SignalError(400, "bad_field", "price (a market order takes none)")
        account = raw.get("account") or default_account
        if account is None and len(self.control.accounts()) == 1:
            account = self.control.accounts()[0]
        if not isinstance(account, str) or account not in self.control.accounts():
            raise SignalError(400, "unknown_account", str(account))
        symbol = _text(raw, "symbol")
        try:
            resolved = dict(self.control.resolve(symbol))
        except Rejected:
            resolved = {}
        if account not in resolved:
            raise SignalError(400, "unknown_symbol", symbol)
        limits = self.control.entries.limits
        return EntryRequest(
            account=account, symbol=symbol, side=side, size=size,
            stop=limits.stop_or_default(stop),
            key=f"{source}:{key}", source=EntrySource.WEBHOOK, take_profit=tp,
            by=f"webhook {source}", limit_price=limit)

    async def _failed(self, source: str, exc: SignalError) -> None:
        state = self._state.get(source)
        if state is None:
            if exc.reason != "unknown_source":
                return
            state = self._state.setdefault(source, _SourceState())
        state.failures += 1
        if state.failures == self.settings.alert_after_failures:  # once per streak
            await self.bus.publish(ev.SignalsFailing(
                account="engine", source=source[:64], failures=state.failures,
                reason=exc.reason))


def add_signal_routes(app: web.Application, *, control: ControlService,
                      settings: SignalsSettings, clock: Clock, bus: EventBus,
                      confirm: SignalConfirm | None = None) -> SignalEndpoint:
    """Add `POST /signal/{source}` to the shared HTTP application."""
    endpoint = SignalEndpoint(control, settings, clock=clock, bus=bus, confirm=confirm)
    app.router.add_post("/signal/{source}", endpoint.handle)
    return endpoint


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """What a sender puts in X-Vigil-Signature."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                    hashlib.sha256).hexdigest()


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SignalError(400, "missing_field" if value is None else "bad_field", name)
    text = str(value).strip()
    if not text or len(text) > 64:
        raise SignalError(400, "bad_field", name)
    return text


def _result(result: EntryResult) -> dict[str, Any]:
    plan = result.plan
    return {"status": result.status.value, "key": result.key, "replayed": result.replayed,
            "reason": result.refusal.value if result.refusal else None,
            "detail": result.detail, "symbol": plan.symbol if plan else None,
            "qty": _s(result.filled_qty if result.filled_qty else (plan.qty if plan else None)),
            "stop": _s(plan.stop_price if plan else None),
            "time_to_protect": _s(result.time_to_protect)}


def _s(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.json_response(payload, status=status)


def _confirm_key(entry: EntryRequest) -> str:
    return f"{entry.account}|{entry.key}"
