"""Telegram (and console) front end: aiogram routers over engine.control.ControlService."""
