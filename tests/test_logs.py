"""Secrets never reach the logs: the loguru patcher redacts every registered value."""

from __future__ import annotations

import io

from loguru import logger

from vigil.logs import REDACTED, Redactor


def test_redactor_scrubs_messages_and_exception_text() -> None:
    key, secret = "s3cr3t-api-key", "another-secret"
    redactor = Redactor()
    redactor.add([key, secret, None, "ab"])  # None and too-short values are ignored
    out = io.StringIO()
    logger.remove()
    logger.configure(patcher=redactor)
    sink = logger.add(out, format="{message}", backtrace=False, diagnose=False)
    try:
        logger.info("signing with {} for account main", key)
        try:
            raise ValueError(f"auth failed for key {key} / {secret}")
        except ValueError:
            logger.exception("venue call failed")
    finally:
        logger.remove(sink)
        logger.configure(patcher=None)
    text = out.getvalue()
    assert key not in text and secret not in text
    assert f"signing with {REDACTED} for account main" in text
    assert f"auth failed for key {REDACTED} / {REDACTED}" in text
