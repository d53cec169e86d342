"""Times as TEXT: fixed-width UTC, so comparing the text compares the times in SQL."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_text(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("stored times must be timezone-aware")
    return value.astimezone(UTC).strftime(FORMAT)


def from_text(value: str) -> datetime:
    return datetime.strptime(value, FORMAT).replace(tzinfo=UTC)
