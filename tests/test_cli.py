"""`vigil` as a user runs it: real processes, real files, the fake Bot API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.fakes import FakeBotAPI
from vigil.cli import main

ADMIN = 4242


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def _vigil(tmp_path: Path, *args: str, stdin: bytes | None = None,
                 timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vigil.cli", *args, cwd=tmp_path, env=_env(tmp_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_bad_config_names_the_field_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[guard]\nsla_seconds = "soon"\n[telegram]\nadmins = [1]\ncolour = 1\n')
    code, _, err = await _vigil(tmp_path, "--config", str(config), "check")
    assert code == 2
    assert "guard.sla_seconds" in err and "telegram.colour" in err


async def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    code, _, err = await _vigil(tmp_path, "--config", str(tmp_path / "nope.toml"), "run")
    assert code == 2 and "file not found" in err


async def test_check_protects_and_journal_verify_detects_tampering(tmp_path: Path) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    code, out, _ = await _vigil(tmp_path, "--config", str(config), "check")
    assert code == 0, out
    assert "OK: every position is protected" in out
    assert "ETH/USDT:USDT: had no stop; placed at" in out
    code, out, _ = await _vigil(tmp_path, "--config", str(config), "journal", "verify")
    assert code == 0 and "hash chain intact" in out
    with sqlite3.connect(tmp_path / "data" / "vigil.sqlite3") as conn:
        changed = conn.execute("UPDATE journal SET payload = replace(payload, '\"paper\"',"
                               " '\"other\"') WHERE id = 2").rowcount
    assert changed == 1
    code, out, _ = await _vigil(tmp_path, "--config", str(config), "journal", "verify")
    assert code == 1 and "BROKEN at row 2" in out


async def test_console_chat_lists_the_demo_positions(tmp_path: Path) -> None:
    """`make run`'s path: no token, commands typed on stdin, replies on stdout; stdin closing
    does not stop the engine, SIGINT does, with exit code 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vigil.cli", "run", cwd=tmp_path, env=_env(tmp_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"/positions\n/pnl\n")
    await proc.stdin.drain()
    proc.stdin.close()
    seen = ""
    while ("ETH/USDT:USDT · SHORT" not in seen or "had no stop; placed at" not in seen
           or "🖼 " not in seen):
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, f"vigil exited early: {seen}"
        seen += line.decode()
    assert "BTC/USDT:USDT · LONG 0.05" in seen
    # /pnl's chart: a PNG under data_dir/reports (the default data_dir is ./data), path printed.
    [picture] = [Path(line[2:]) for line in seen.splitlines() if line.startswith("🖼 ")]
    assert picture.parent == tmp_path / "data" / "reports"
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert proc.returncode is None  # still running with stdin closed
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_run_with_config_against_a_bot_api_server(tmp_path: Path) -> None:
    async with FakeBotAPI() as api:
        config = tmp_path / "vigil.toml"
        config.write_text(
            f'data_dir = "{tmp_path / "data"}"\n[telegram]\ntoken = "{api.token}"\n'
            f'api_url = "{api.base_url}"\nadmins = [{ADMIN}]\nalert_chats = [{ADMIN}]\n')
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vigil.cli", "--config", str(config), "run", cwd=tmp_path,
            env=_env(tmp_path), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await api.wait_for("getUpdates", timeout=60)
            api.push_message(ADMIN, "/positions")
            [reply] = await api.wait_for(
                "sendMessage", lambda c: c.chat_id == ADMIN and "· SHORT 1.5 @" in (c.text or ""),
                timeout=30)
            assert "BTC/USDT:USDT" in reply.text
            sent = await api.wait_for("setMyCommands", count=4)  # default + admin, en + ru
            menus = {str(c.params["scope"]): str(c.params["commands"]) for c in sent}
            assert "fix_sl" in menus[str({"type": "chat", "chat_id": ADMIN})]
            assert "fix_sl" not in menus[str({"type": "default"})]
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0


async def test_keys_add_round_trip_never_stores_the_secret_in_clear(tmp_path: Path) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[[accounts]]\nname = "paper"\n'
                      '[[accounts]]\nname = "bg"\nvenue = "bitget"\n')
    secret = "Sup3rS3cretValue-9f8e7d"
    code, out, err = await _vigil(tmp_path, "--config", str(config), "keys", "add", "bg",
                                  stdin=f"AKID-123456\n{secret}\n".encode())
    assert code == 2 and "passphrase" in err  # Bitget needs its passphrase too
    code, out, _ = await _vigil(tmp_path, "--config", str(config), "keys", "add", "bg",
                                stdin=f"AKID-123456\n{secret}\npass-phrase-77\n".encode())
    assert code == 0 and "keys stored for account bg" in out
    code, out, _ = await _vigil(tmp_path, "--config", str(config), "keys", "list")
    assert code == 0 and out.split() == ["bg"]
    code, _, err = await _vigil(tmp_path, "--config", str(config), "keys", "add", "nope",
                                stdin=b"a\nb\n")
    assert code == 2 and "no account named 'nope'" in err
    key_file = tmp_path / "data" / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    for path in (tmp_path / "data").iterdir():
        raw = path.read_bytes()
        if path.name != "master.key":
            assert secret.encode() not in raw and b"pass-phrase-77" not in raw, path


async def test_a_second_engine_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    """Two engines would mean two writers per position and a forked journal."""
    config = tmp_path / "vigil.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vigil.cli", "--config", str(config), "run", cwd=tmp_path,
        env=_env(tmp_path), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert b"Vigil is running" in line
        code, out, err = await _vigil(tmp_path, "--config", str(config), "check")
        assert code == 1 and "another Vigil is already running" in err
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    code, out, _ = await _vigil(tmp_path, "--config", str(config), "check")
    assert code == 0, out  # the lock went with the process


def _keys_config(tmp_path: Path) -> Path:
    config = tmp_path / "vigil.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[[accounts]]\nname = "paper"\n'
                      '[[accounts]]\nname = "bb"\nvenue = "bybit"\ntestnet = true\n')
    return config


async def test_config_goes_before_or_after_any_subcommand(tmp_path: Path) -> None:
    config = str(_keys_config(tmp_path))
    code, out, err = await _vigil(tmp_path, "keys", "add", "bb", "--config", config,
                                  stdin=b"AK-after\nSK-after\n")
    assert code == 0 and "keys stored for account bb" in out, err
    code, out, err = await _vigil(tmp_path, "--config", config, "keys", "add", "bb",
                                  stdin=b"AK-before\nSK-before\n")
    assert code == 0 and "keys stored for account bb" in out, err
    code, out, _ = await _vigil(tmp_path, "keys", "list", "--config", config)
    assert code == 0 and out.split() == ["bb"]  # the file's data_dir both times


async def test_keys_remove(tmp_path: Path) -> None:
    config = str(_keys_config(tmp_path))
    code, _, err = await _vigil(tmp_path, "keys", "remove", "bb", "--config", config)
    assert code == 2 and "no keys stored for account 'bb'" in err
    assert not (tmp_path / "data" / "vigil.sqlite3").exists()  # nor creates a database
    await _vigil(tmp_path, "keys", "add", "bb", "--config", config, stdin=b"AK-1\nSK-1\n")
    code, _, err = await _vigil(tmp_path, "keys", "remove", "paper", "--config", config)
    assert code == 2 and "(stored: bb)" in err
    code, out, _ = await _vigil(tmp_path, "keys", "remove", "bb", "--config", config)
    assert code == 0 and "keys removed for account bb" in out
    code, out, _ = await _vigil(tmp_path, "keys", "list", "--config", config)
    assert code == 0 and out.split() == []


@pytest.mark.parametrize("args", [[], ["run"], ["check"], ["journal"], ["keys"],
                                  ["keys", "add"], ["keys", "list"], ["keys", "remove"]])
def test_every_help_shows_examples(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n  vigil " in out
    assert "--config FILE" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"vigil {version('vigil')}"


@pytest.mark.parametrize(("age", "cancelled"), [(600, True), (5, False)])
async def test_check_cancels_an_old_orphaned_stop_and_leaves_a_young_one(
        tmp_path: Path, age: int, cancelled: bool) -> None:
    """Default grace (30 s) counted from the venue's creation time: a one-shot check sees the
    order once, so first-seen alone would never let it go."""
    config = tmp_path / "vigil.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n'
                      f"[sim]\ndemo_orphan_stop_age_seconds = {age}\n")
    code, out, _ = await _vigil(tmp_path, "--config", str(config), "check")
    assert code == 0, out
    assert "ETH/USDT:USDT: had no stop; placed at" in out
    assert "OK: every position is protected" in out
    with sqlite3.connect(tmp_path / "data" / "vigil.sqlite3") as conn:
        zombies = conn.execute("SELECT payload FROM journal WHERE kind = 'zombie_cancelled'"
                               ).fetchall()
    if cancelled:
        assert len(zombies) == 1 and "SOL/USDT:USDT" in zombies[0][0]
        assert "SOL/USDT:USDT: orphaned stop_loss order" in out and "left for now" not in out
    else:
        assert zombies == []
        assert "[paper] 1 orphaned stop on SOL/USDT:USDT, 5 s old: left for now" in out
