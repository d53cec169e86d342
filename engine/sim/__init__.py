"""Deterministic simulated exchange: paper mode and the tests run on it through the Venue port."""
