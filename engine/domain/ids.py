"""Deterministic client order ids: the same intent always gets the same id, so a retry after an
unknown outcome or a crash can be looked up on the venue instead of placed twice."""

from __future__ import annotations

import hashlib
from enum import StrEnum

PREFIX = "vg"


class OrderPurpose(StrEnum):
    STOP = "s"
    CLOSE = "c"
    ENTRY = "e"
    TAKE_PROFIT = "t"


def client_order_id(account: str, symbol: str, generation: int, purpose: OrderPurpose,
                    seq: int) -> str:
    """`vg<purpose><20 hex>`: 23 characters, inside every venue's limit (Binance 36, Bybit 36,
    Bitget 40), letters and digits only."""
    digest = hashlib.sha256(f"{account}|{symbol}|{generation}|{purpose}|{seq}".encode()).hexdigest()
    return f"{PREFIX}{purpose.value}{digest[:20]}"


def is_ours(client_id: str | None) -> bool:
    return bool(client_id) and client_id.startswith(PREFIX) and len(client_id) == 23


def has_purpose(client_id: str | None, purpose: OrderPurpose) -> bool:
    """One of our ids, made for `purpose` (our take-profits are told from a person's by this)."""
    return is_ours(client_id) and client_id is not None and client_id[len(PREFIX)] == purpose.value
