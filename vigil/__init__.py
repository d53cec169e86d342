"""Vigil: keeps every futures position under exactly one stop-loss, driven from Telegram."""
