"""`vigil run | check | journal verify | keys add/list/remove` — the console script."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigil.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from engine.protection.reconcile import Orphan

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


EXAMPLES = """\
examples:
  vigil run                                  paper mode and a console chat, nothing configured
  vigil --config vigil.toml run              the bot and the engine with your settings
  vigil check --config vigil.toml            one protection pass (--config goes anywhere)
  vigil --config vigil.toml keys add binance-test
  vigil --version

Settings come from --config FILE or $VIGIL_CONFIG, then VIGIL_<SECTION>__<KEY> variables.
Exit codes: 0 ok, 1 failed, 2 bad configuration or arguments."""

SUBCOMMAND_EXAMPLES = {
    "run": """\
examples:
  vigil run                                  paper mode, console chat (type /help)
  vigil run --config vigil.toml              Telegram bot when telegram.token is set""",
    "check": """\
examples:
  vigil check --config vigil.toml && echo protected
exit 0 only if every position has its stop after the pass""",
    "journal": """\
examples:
  vigil journal verify --config vigil.toml
  vigil journal verify --archives            also the archived segments (journal.retention_days)
exit 0 if the hash chain holds, 1 naming the first broken row""",
    "paper-exchange": """\
examples:
  vigil paper-exchange serve --port 8765     then sim.url = "http://127.0.0.1:8765"
  vigil paper-exchange serve --db data/paper.sqlite3 --faults '{"reject": 0.05}'
state in --db (default: <data_dir>/paper-exchange.sqlite3) survives restarts""",
    "keys": """\
examples:
  vigil keys add binance-test --config vigil.toml     prompts for key and secret
  VIGIL_API_KEY=... VIGIL_API_SECRET=... vigil keys add bybit-test --from-env
  vigil keys list --config vigil.toml
  vigil keys remove binance-test --config vigil.toml""",
    "backup": """\
examples:
  vigil backup /backups/vigil-$(date +%F).sqlite3 --config vigil.toml
safe while `vigil run` is running (SQLite online backup); the file must not exist yet""",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vigil")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    # --config is accepted before and after any subcommand: every parser knows it, with no
    # default (SUPPRESS), so a subparser never overwrites a value given before the subcommand.
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="TOML settings file (default: $VIGIL_CONFIG)")
    keep_lines = argparse.RawDescriptionHelpFormatter  # the examples keep their layout
    parser = argparse.ArgumentParser(
        prog="vigil", parents=[config], epilog=EXAMPLES, formatter_class=keep_lines,
        description=(
            "Keeps every futures position under exactly one stop-loss; driven from Telegram."))
    parser.add_argument("--version", action="version", version=f"vigil {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, text: str, examples: str | None = None
                ) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=text, description=text, parents=[config],
                                 epilog=examples, formatter_class=keep_lines)

    command(sub, "run", "run the engine and the bot (console chat without a token)",
            SUBCOMMAND_EXAMPLES["run"])
    command(sub, "check", "one protection pass; exit 0 only if every position is protected "
                          "afterwards", SUBCOMMAND_EXAMPLES["check"])
    journal = command(sub, "journal", "journal tools", SUBCOMMAND_EXAMPLES["journal"])
    journal.add_argument("action", choices=["verify"])
    journal.add_argument("--archives", action="store_true",
                         help="also check every archived segment's chain and that the segments "
                              "and the live chain link up, anchor to anchor")
    keys = command(sub, "keys", "exchange API keys, stored encrypted", SUBCOMMAND_EXAMPLES["keys"])
    keys_sub = keys.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    add = command(keys_sub, "add", "store keys for an account (prompted, stdin lines or the "
                                   "environment)", SUBCOMMAND_EXAMPLES["keys"])
    add.add_argument("account", metavar="NAME", help="an account name from the settings")
    add.add_argument("--from-env", action="store_true", help=(
        "read VIGIL_API_KEY, VIGIL_API_SECRET and VIGIL_API_PASSWORD instead of prompting"))
    command(keys_sub, "list", "account names that have keys (never the keys)",
            SUBCOMMAND_EXAMPLES["keys"])
    remove = command(keys_sub, "remove", "delete the stored keys of an account",
                     SUBCOMMAND_EXAMPLES["keys"])
    remove.add_argument("account", metavar="NAME", help="an account name with stored keys")
    backup = command(sub, "backup", "copy the database (journal, state, keys) to a new "
                     "file, consistent even while Vigil runs", SUBCOMMAND_EXAMPLES["backup"])
    backup.add_argument("path", type=Path, metavar="PATH", help="the new file to write")
    paper = command(sub, "paper-exchange", "the simulated exchange as its own process",
                    SUBCOMMAND_EXAMPLES["paper-exchange"])
    paper_sub = paper.add_subparsers(dest="paper_action", required=True, metavar="ACTION")
    from vigil.paper import add_serve_arguments

    add_serve_arguments(command(paper_sub, "serve", "serve the paper exchange on 127.0.0.1 "
                                "(HTTP + WebSocket)", SUBCOMMAND_EXAMPLES["paper-exchange"]))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = getattr(args, "config", None) or (Path(os.environ["VIGIL_CONFIG"])
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
    from vigil.http import HttpBindError

    try:
        if args.command == "run":
            return asyncio.run(_run(settings))
        if args.command == "check":
            return asyncio.run(_check(settings))
    except (DataDirBusy, HttpBindError) as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if args.command == "journal":
        return asyncio.run(_journal_verify(settings, archives=args.archives))
    if args.command == "backup":
        return _backup(settings, args.path)
    if args.command == "paper-exchange":
        from vigil.paper import serve_command

        return serve_command(settings, args)
    if args.keys_action == "add":
        return asyncio.run(_keys_add(settings, args.account, from_env=args.from_env))
    if args.keys_action == "remove":
        return asyncio.run(_keys_remove(settings, args.account))
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
    # Neither these nor the engine import aiogram: a check starts in a fraction of the time.
    from bot import render
    from bot.l10n import plain
    from vigil.runtime import Engine

    engine = await Engine.build(settings)
    try:
        reports, orphans, ok = await engine.check()
    finally:
        await engine.stop()
        await engine.close()
    with plain(settings.telegram.default_language):
        print(render.fix_report(reports))
        for line in (line for account, found in orphans.items()
                     for line in _orphan_lines(account, found)):
            print(line)
    print("OK: every position is protected" if ok else "FAIL: not every position is protected")
    return EXIT_OK if ok else EXIT_FAIL


def _orphan_lines(account: str, found: list[Orphan]) -> list[str]:
    """Orphaned stops still resting after the pass, by symbol: young ones wait out their grace
    (a position may be on its way), overdue ones are left only because their cancel failed."""
    from bot.l10n import ngettext

    by_symbol: dict[tuple[str, bool], list[Orphan]] = {}
    for orphan in found:
        by_symbol.setdefault((orphan.order.symbol, orphan.overdue), []).append(orphan)
    lines = []
    for (symbol, overdue), group in by_symbol.items():
        n, age = len(group), int(max(o.age for o in group).total_seconds())
        if overdue:
            text = ngettext("⚠️ {n} orphaned stop on {symbol}, {age} s old: its cancel failed, "
                            "still resting", "⚠️ {n} orphaned stops on {symbol}, up to {age} s "
                            "old: their cancel failed, still resting", n)
        else:
            text = ngettext("{n} orphaned stop on {symbol}, {age} s old: left for now",
                            "{n} orphaned stops on {symbol}, up to {age} s old: left for now", n)
        lines.append(f"[{account}] " + text.format(n=n, symbol=symbol, age=age))
    return lines


async def _journal_verify(settings: Settings, *, archives: bool = False) -> int:
    from storage.db import Database
    from storage.journal import Journal
    from storage.repositories import StateRepo
    from storage.retention import check_archives, live_anchor

    if not settings.db_path.exists():
        print(f"no journal at {settings.db_path}", file=sys.stderr)
        return EXIT_FAIL
    db = await Database.open(settings.db_path)
    try:
        result = await Journal(db).verify()
        anchor = await live_anchor(StateRepo(db))
    finally:
        await db.close()
    ok = result.ok
    if result.ok:
        print(f"journal OK: {result.rows} rows, hash chain intact")
    else:
        print(f"journal BROKEN at row {result.broken_id}: {result.reason}")
    if archives:
        directory = settings.journal_archive_dir
        checks = await asyncio.to_thread(check_archives, directory, anchor)
        for check in checks:
            if check.ok:
                print(f"archive OK: {check.path.name}, rows {check.first_id}..{check.last_id}")
            else:
                print(f"archive BROKEN: {check.path.name}: {check.reason}")
        ok = ok and all(c.ok for c in checks)
        if not checks:
            print(f"no archives in {directory}: nothing was archived yet")
    return EXIT_OK if ok else EXIT_FAIL


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


async def _keys_remove(settings: Settings, account: str) -> int:
    from cryptography.fernet import Fernet

    from storage.db import Database
    from storage.secrets import KeyStore

    if not settings.db_path.exists():
        print(f"vigil: no keys stored for account {account!r} (no database at "
              f"{settings.db_path})", file=sys.stderr)
        return EXIT_CONFIG
    db = await Database.open(settings.db_path)
    try:
        # Deleting decrypts nothing: a throwaway key, so keys whose master key was lost or is
        # unreadable can still be removed (and no master key file is created for this).
        store = KeyStore(db.conn, Fernet.generate_key())
        stored = await store.accounts()
        if account not in stored:
            print(f"vigil: no keys stored for account {account!r} (stored: "
                  f"{', '.join(stored) or 'none'})", file=sys.stderr)
            return EXIT_CONFIG
        await store.delete(account)
    finally:
        await db.close()
    print(f"keys removed for account {account}")
    return EXIT_OK


def _backup(settings: Settings, target: Path) -> int:
    """SQLite's online backup API: a consistent copy page by page, with `vigil run` writing
    meanwhile (no lock taken). The master key is NOT in it: back up data_dir/master.key (or
    VIGIL_MASTER_KEY) separately, or the stored exchange keys cannot be read after a restore."""
    import sqlite3

    if not settings.db_path.exists():
        print(f"vigil: no database at {settings.db_path}", file=sys.stderr)
        return EXIT_FAIL
    if target.exists():
        print(f"vigil: {target} already exists; choose a new file", file=sys.stderr)
        return EXIT_CONFIG
    if not target.parent.is_dir():
        print(f"vigil: no directory {target.parent}", file=sys.stderr)
        return EXIT_CONFIG
    source = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        source.close()
    print(f"backup written to {target}; keep master.key safe separately")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
