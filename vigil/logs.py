"""loguru set-up: human logs on stderr, a rotating file in data_dir, secrets redacted."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loguru import logger

REDACTED = "***"


class Redactor:
    """Replaces every known secret value in a log record's message (and exception text)."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, values: Iterable[str | None]) -> None:
        self._secrets.update(v for v in values if v and len(v) >= 4)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def __call__(self, record: Any) -> None:
        record["message"] = self.scrub(record["message"])
        if record["exception"] is not None:
            exc = record["exception"]
            if exc.value is not None:
                exc.value.args = tuple(self.scrub(str(a)) for a in exc.value.args)


REDACTOR = Redactor()


def setup_logging(level: str, data_dir: Path | None, *, console_chat: bool) -> None:
    logger.remove()
    logger.configure(patcher=REDACTOR)
    # At the console chat, stderr carries only problems so replies stay readable.
    logger.add(sys.stderr, level="WARNING" if console_chat else level, backtrace=False,
               diagnose=False)
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        logger.add(data_dir / "vigil.log", level=level, rotation="10 MB", retention=5,
                   backtrace=False, diagnose=False, enqueue=False)
