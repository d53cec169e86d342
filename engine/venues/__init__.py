"""Real exchanges behind the Venue port: ccxt plus one dialect per exchange.

ccxt dicts never leave this package: callers get PositionReport / OrderReport / events and our
error tree (engine.errors)."""

from engine.venues.ccxt_venue import CcxtVenue
from engine.venues.factory import make_venue
from engine.venues.streams import Backoff, Watcher

__all__ = ["Backoff", "CcxtVenue", "Watcher", "make_venue"]
