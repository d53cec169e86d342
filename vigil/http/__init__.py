"""The ops HTTP surface (docs/HTTP.md)."""


class HttpBindError(Exception):
    """The [http] host and port cannot be bound (in use, no such address). Here, not in
    server.py, so the shell's commands can catch it without importing aiohttp."""
