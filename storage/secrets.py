"""Exchange API credentials, encrypted at rest with Fernet under one master key.

The master key comes from VIGIL_MASTER_KEY or from `<data_dir>/master.key` (created 0600 on first
use). Rows hold Fernet tokens of a small JSON document that also names its account, so a row
copied onto another account is refused rather than silently used."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

MASTER_KEY_ENV = "VIGIL_MASTER_KEY"
MASTER_KEY_FILE = "master.key"


class KeyStoreError(Exception):
    """The key store cannot do what was asked; the message never contains secret material."""


@dataclass(frozen=True, slots=True)
class ApiCredentials:
    api_key: SecretStr
    secret: SecretStr
    password: SecretStr | None = None  # Bitget's passphrase

    @classmethod
    def of(cls, api_key: str, secret: str, password: str | None = None) -> ApiCredentials:
        return cls(SecretStr(api_key), SecretStr(secret),
                   SecretStr(password) if password else None)


class KeyStore:
    def __init__(self, conn: aiosqlite.Connection, fernet_key: bytes,
                 now: Callable[[], datetime] | None = None) -> None:
        self._conn = conn
        self._fernet = _fernet(fernet_key, "the master key")
        self._now = now or (lambda: datetime.now(UTC))

    @classmethod
    def load_master_key(cls, data_dir: Path, env: Mapping[str, str]) -> bytes:
        """VIGIL_MASTER_KEY if set, else `data_dir/master.key`, created (0600) when missing."""
        from_env = env.get(MASTER_KEY_ENV, "").strip()
        if from_env:
            key = from_env.encode("ascii", errors="replace")
            _fernet(key, f"{MASTER_KEY_ENV}")
            return key
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / MASTER_KEY_FILE
        if not path.exists():
            _create_key_file(path)
        return _read_key_file(path)

    async def put(self, account: str, creds: ApiCredentials) -> None:
        document = {
            "account": account,
            "api_key": creds.api_key.get_secret_value(),
            "secret": creds.secret.get_secret_value(),
            "password": creds.password.get_secret_value() if creds.password else None,
        }
        token = self._fernet.encrypt(json.dumps(document).encode())
        await self._conn.execute(
            "INSERT INTO secrets (account, ciphertext, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(account) DO UPDATE SET ciphertext = excluded.ciphertext, "
            "updated_at = excluded.updated_at",
            (account, token, self._now().isoformat()))
        await self._conn.commit()

    async def get(self, account: str) -> ApiCredentials | None:
        rows = await self._conn.execute_fetchall(
            "SELECT ciphertext FROM secrets WHERE account = ?", (account,))
        if not rows:
            return None
        row = rows[0]
        try:
            document = json.loads(self._fernet.decrypt(bytes(row[0])))
        except InvalidToken:
            raise KeyStoreError(
                f"master key does not decrypt stored credentials for account {account}") from None
        if document.get("account") != account:
            raise KeyStoreError(f"stored credentials for account {account} were written for "
                                f"another account; store them again")
        return ApiCredentials.of(document["api_key"], document["secret"], document.get("password"))

    async def accounts(self) -> list[str]:
        rows = await self._conn.execute_fetchall("SELECT account FROM secrets ORDER BY account")
        return [str(row[0]) for row in rows]

    async def delete(self, account: str) -> None:
        await self._conn.execute("DELETE FROM secrets WHERE account = ?", (account,))
        await self._conn.commit()


def _fernet(key: bytes, where: str) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        raise KeyStoreError(f"{where} is not a valid Fernet key "
                            "(32 url-safe base64-encoded bytes)") from None


def _create_key_file(path: Path) -> None:
    """Write a new key to a private temp file, then link it into place: the key file appears
    complete or not at all, and a concurrent creator's key wins without being overwritten."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyStoreError(f"{path} is readable by other users (mode {mode:o}): chmod 600 it")
    key = path.read_bytes().strip()
    _fernet(key, str(path))
    return key
