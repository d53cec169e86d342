"""Vigil engine: protection, reconcile, risk. Never imports bot/ or aiogram."""
