"""Daily PnL: the ledger synced from the venues, reports computed from it, and the daily schedule.

Nothing here knows about Telegram: bot/reports.py renders and sends what this computes."""
