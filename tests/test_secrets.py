"""KeyStore: Fernet-encrypted credentials in a real SQLite file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import aiosqlite
import pytest
from cryptography.fernet import Fernet

from storage.db import Database
from storage.secrets import (
    MASTER_KEY_ENV,
    ApiCredentials,
    KeyStore,
    KeyStoreError,
)

API_KEY = "AKIA-live-7d1f0c93b2e84a56"
SECRET = "sk-5e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b"
PASSPHRASE = "bitget-passphrase-Zq81"


@pytest.fixture
def conn(db: Database) -> aiosqlite.Connection:
    """The secrets table exactly as the project's migrations create it."""
    return db.conn


def _read_all_files(directory: Path) -> bytes:
    """The database file and its journals, exactly as they sit on disk."""
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file())


async def test_round_trip_with_and_without_passphrase(conn: aiosqlite.Connection) -> None:
    store = KeyStore(conn, Fernet.generate_key())
    await store.put("bitget-main", ApiCredentials.of(API_KEY, SECRET, PASSPHRASE))
    await store.put("binance-main", ApiCredentials.of(API_KEY, SECRET))

    bitget = await store.get("bitget-main")
    binance = await store.get("binance-main")

    assert bitget is not None and binance is not None
    assert bitget.api_key.get_secret_value() == API_KEY
    assert bitget.secret.get_secret_value() == SECRET
    assert bitget.password is not None and bitget.password.get_secret_value() == PASSPHRASE
    assert binance.password is None
    assert await store.get("nobody") is None
    assert await store.accounts() == ["binance-main", "bitget-main"]


async def test_put_replaces_and_delete_removes(conn: aiosqlite.Connection) -> None:
    store = KeyStore(conn, Fernet.generate_key())
    await store.put("a", ApiCredentials.of("old-key-1", "old-secret-1"))
    await store.put("a", ApiCredentials.of(API_KEY, SECRET))
    creds = await store.get("a")
    assert creds is not None and creds.api_key.get_secret_value() == API_KEY

    await store.delete("a")
    assert await store.get("a") is None and await store.accounts() == []


async def test_repr_hides_the_values() -> None:
    text = repr(ApiCredentials.of(API_KEY, SECRET, PASSPHRASE))
    assert API_KEY not in text and SECRET not in text and PASSPHRASE not in text


async def test_database_file_never_holds_the_values_in_clear(db_path: Path,
                                                             conn: aiosqlite.Connection) -> None:
    store = KeyStore(conn, Fernet.generate_key())
    await store.put("bitget-main", ApiCredentials.of(API_KEY, SECRET, PASSPHRASE))
    await conn.execute("PRAGMA wal_checkpoint(FULL)")

    raw = _read_all_files(db_path.parent)
    assert b"bitget-main" in raw  # the file is really the one written...
    for value in (API_KEY, SECRET, PASSPHRASE):
        assert value.encode() not in raw  # ...and the secrets are not in it


async def test_a_wrong_master_key_is_a_clear_error(conn: aiosqlite.Connection) -> None:
    await KeyStore(conn, Fernet.generate_key()).put("bybit-1", ApiCredentials.of(API_KEY, SECRET))

    with pytest.raises(KeyStoreError,
                       match="master key does not decrypt stored credentials for account bybit-1"):
        await KeyStore(conn, Fernet.generate_key()).get("bybit-1")


async def test_a_row_moved_to_another_account_is_refused(conn: aiosqlite.Connection) -> None:
    store = KeyStore(conn, Fernet.generate_key())
    await store.put("victim", ApiCredentials.of(API_KEY, SECRET))
    await conn.execute("UPDATE secrets SET account = 'attacker' WHERE account = 'victim'")

    with pytest.raises(KeyStoreError, match="another account"):
        await store.get("attacker")


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = KeyStore.load_master_key(data_dir, {})
    path = data_dir / "master.key"

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyStore.load_master_key(data_dir, {}) == first
    Fernet(first)  # a usable key
    assert [p.name for p in data_dir.iterdir()] == ["master.key"]  # no temp file left behind


def test_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    assert KeyStore.load_master_key(tmp_path, {MASTER_KEY_ENV: key.decode()}) == key
    assert not (tmp_path / "master.key").exists()


def test_invalid_environment_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match=MASTER_KEY_ENV):
        KeyStore.load_master_key(tmp_path, {MASTER_KEY_ENV: "not-a-key"})


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    KeyStore.load_master_key(tmp_path, {})
    os.chmod(tmp_path / "master.key", 0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        KeyStore.load_master_key(tmp_path, {})
