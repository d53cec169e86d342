"""Test doubles for external services."""

from tests.fakes.bot_api import FakeBotAPI, SentCall

__all__ = ["FakeBotAPI", "SentCall"]
