"""Times as TEXT: fixed-width UTC, so comparing the text compares the times in SQL."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_text(value: datetime) -> str:
    """`value` as FORMAT. %-formatting the fields gives the same text as strftime(FORMAT) at
    half the cost (the journal formats every event's time on the publisher's path)."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("stored times must be timezone-aware")
        value = value.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (an f-string costs 2x)
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond)


def from_text(value: str) -> datetime:
    return datetime.strptime(value, FORMAT).replace(tzinfo=UTC)
