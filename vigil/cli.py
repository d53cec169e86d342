"""`vigil run | check | journal verify | keys add/list` — the console script."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
from pathlib import Path

from vigil.settings import Settings, SettingsError, load_settings

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=(
        "Keeps every futures position under exactly one stop-loss; driven from Telegram."))
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML settings file (default: $VIGIL_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the engine and the bot (console chat without a token)")
    sub.add_parser("check", help="one protection pass; exit 0 only if every position is "
                                 "protected afterwards")
    journal = sub.add_parser("journal", help="journal tools")
    journal.add_argument("action", choices=["verify"])
    keys = sub.add_parser("keys", help="exchange API keys, stored encrypted")
    keys_sub = keys.add_subparsers(dest="keys_action", required=True)
    add = keys_sub.add_parser("add", help="store keys for an account (stdin or environment)")
    add.add_argument("account")
    add.add_argument("--from-env", action="store_true", help=(
        "read VIGIL_API_KEY, VIGIL_API_SECRET and VIGIL_API_PASSWORD instead of prompting"))
    keys_sub.add_parser("list", help="account names that have keys (never the keys)")
    for p in (sub.choices["run"], sub.choices["check"], journal, keys):
        p.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = args.config or (Path(os.environ["VIGIL_CONFIG"])
                             if os.environ.get("VIGIL_CONFIG") else None)
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        print("vigil: bad configuration:", file=sys.stderr)
        for line in str(exc).splitlines():
            print(f"  {line}", file=sys.stderr)
        return EXIT_CONFIG
    from vigil.logs import setup_logging

    setup_logging(settings.log_level, settings.data_dir,
                  console_chat=args.command == "run" and settings.telegram.token is None)
    from storage.lock import DataDirBusy

    try:
        if args.command == "run":
            return asyncio.run(_run(settings))
        if args.command == "check":
            return asyncio.run(_check(settings))
    except DataDirBusy as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if args.command == "journal":
        return asyncio.run(_journal_verify(settings))
    if args.keys_action == "add":
        return asyncio.run(_keys_add(settings, args.account, from_env=args.from_env))
    return asyncio.run(_keys_list(settings))


async def _run(settings: Settings) -> int:
    from vigil.runtime import Runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime = Runtime(settings)
    try:
        await runtime.start()
        if runtime.console:
            print("Vigil is running in paper mode with a console chat. Type /help, "
                  "/positions, /status; Ctrl+C stops.", flush=True)
        await stop.wait()
    finally:
        await runtime.stop()
    return EXIT_OK


async def _check(settings: Settings) -> int:
    from bot import render
    from bot.i18n import build_i18n
    from vigil.runtime import Engine

    engine = await Engine.build(settings)
    i18n = build_i18n(settings.telegram.default_language)
    try:
        reports, ok = await engine.check()
    finally:
        await engine.stop()
        await engine.close()
    with i18n.context():
        print(render.fix_report(reports))
    print("OK: every position is protected" if ok else "FAIL: not every position is protected")
    return EXIT_OK if ok else EXIT_FAIL


async def _journal_verify(settings: Settings) -> int:
    from storage.db import Database
    from storage.journal import Journal

    if not settings.db_path.exists():
        print(f"no journal at {settings.db_path}", file=sys.stderr)
        return EXIT_FAIL
    db = await Database.open(settings.db_path)
    try:
        result = await Journal(db).verify()
    finally:
        await db.close()
    if result.ok:
        print(f"journal OK: {result.rows} rows, hash chain intact")
        return EXIT_OK
    print(f"journal BROKEN at row {result.broken_id}: {result.reason}")
    return EXIT_FAIL


async def _keys_add(settings: Settings, account: str, *, from_env: bool) -> int:
    from storage.db import Database
    from storage.secrets import ApiCredentials, KeyStore

    names = {a.name: a for a in settings.accounts}
    if account not in names:
        print(f"vigil: no account named {account!r} in the settings "
              f"(known: {', '.join(sorted(names))})", file=sys.stderr)
        return EXIT_CONFIG
    if from_env:
        key, secret = os.environ.get("VIGIL_API_KEY"), os.environ.get("VIGIL_API_SECRET")
        password = os.environ.get("VIGIL_API_PASSWORD")
    elif sys.stdin.isatty():
        key, secret = getpass.getpass("API key: "), getpass.getpass("API secret: ")
        password = getpass.getpass("Passphrase (Bitget; empty for none): ") or None
    else:  # lines on stdin: key, secret, optional passphrase
        lines = [line.strip() for line in sys.stdin.read().splitlines()]
        key, secret = [*lines, "", ""][:2]
        password = lines[2] if len(lines) > 2 and lines[2] else None
    if not key or not secret:
        print("vigil: both an API key and a secret are required", file=sys.stderr)
        return EXIT_CONFIG
    if names[account].venue == "bitget" and not password:
        print("vigil: Bitget needs the API passphrase as well", file=sys.stderr)
        return EXIT_CONFIG
    db = await Database.open(settings.db_path)
    try:
        store = KeyStore(db.conn, KeyStore.load_master_key(settings.data_dir, os.environ))
        await store.put(account, ApiCredentials.of(key, secret, password))
    finally:
        await db.close()
    print(f"keys stored for account {account} (encrypted)")
    return EXIT_OK


async def _keys_list(settings: Settings) -> int:
    from storage.db import Database
    from storage.secrets import KeyStore

    db = await Database.open(settings.db_path)
    try:
        store = KeyStore(db.conn, KeyStore.load_master_key(settings.data_dir, os.environ))
        for name in await store.accounts():
            print(name)
    finally:
        await db.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
