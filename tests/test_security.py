"""Secrets never leak, and the alert sinks work from the command line.

A whole session runs with planted secrets — the gateway token, the database password (libpq's
``PGPASSWORD``, and in ``KIT_DB_URL`` for ``kit db``), the SMTP password and the webhook URL's
token — at DEBUG log level: ``kit serve`` recording into PostgreSQL, a client authenticating
and sending commands (good, bad, and one with a wrong token), alerts mailed and posted. Then
every log line, error message, frame, file written, database row, e-mail and webhook body is
searched for each secret. ``kit run`` with ``KIT_SMTP_*`` / ``KIT_WEBHOOK_URL`` delivers its
alerts to the local SMTP and HTTP servers the sink tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import fresh_database
from service_helpers import REPO, free_port
from test_alerts import hook, smtp  # noqa: F401 - the sink tests' local servers, as fixtures
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kit.store.pgserver import LocalPostgres

TOKEN = "planted-token-Zq8Lr2Vx9Kp4"
WRONG = "planted-wrong-token-Hw3Nc7"
DB_PW = "planted-db-pw-Tt5Ym1Qa"
SMTP_PW = "planted-smtp-pw-Rb6Ue2Ko"
HOOK = "planted-hook-token-Gd4Pj8"
SECRETS = (TOKEN, WRONG, DB_PW, SMTP_PW, HOOK)


def sink_env(ctl, hook_url: str) -> dict[str, str]:
    return {"KIT_SMTP_HOST": "127.0.0.1", "KIT_SMTP_PORT": str(ctl.port),
            "KIT_SMTP_FROM": "desk@example.com", "KIT_SMTP_TO": "me@example.com",
            "KIT_SMTP_USER": "desk", "KIT_SMTP_PASSWORD": SMTP_PW, "KIT_SMTP_STARTTLS": "false",
            "KIT_WEBHOOK_URL": hook_url}  # fmt: skip


async def kit(*argv: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kit", *argv, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_kit_run_delivers_alerts_to_the_configured_email_and_webhook(smtp, hook, tmp_path):  # noqa: F811
    ctl, inbox = smtp
    hook.url = hook.url.replace("SECRET-TOKEN", HOOK)
    env = {**os.environ, **sink_env(ctl, hook.url), "PYTHONPATH": str(REPO),
           "KIT_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    code, out = await kit("run", "--feed", "sim", "--script", "feed_pause", "--speed", "max",
                          env=env, cwd=tmp_path)  # fmt: skip
    assert code == 0, out
    assert inbox.messages, out  # feed_stale is CRITICAL: e-mailed
    assert inbox.logins == [(b"desk", SMTP_PW.encode())]
    assert any("feed_stale" in m.get_content() for m in inbox.messages)
    posted = [a for _, _, body in hook.requests for a in json.loads(body)["alerts"]]
    assert {"feed_stale"} <= {a["rule"] for a in posted}
    assert all(line == f"POST /hooks/{HOOK} HTTP/1.1" for line, _, _ in hook.requests)
    assert [s for s in SECRETS if s in out] == []


@pytest.fixture(scope="module")
def pg():
    server = LocalPostgres().start()
    try:
        yield server
    finally:
        server.cleanup()


def database_text(url: str) -> str:
    """Every row of every table of the desk's database, as text."""
    out = []
    with psycopg.connect(url) as con:
        tables = [r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = "
                                            "current_schema()").fetchall()]  # fmt: skip
        for t in tables:
            out.extend(map(repr, con.execute(f'SELECT * FROM "{t}"').fetchall()))
    assert len(out) > 10  # the session really recorded
    return "\n".join(out)


async def test_a_whole_session_leaks_no_secret(pg: LocalPostgres, smtp, hook, tmp_path: Path):  # noqa: F811
    ctl, inbox = smtp
    hook.url = hook.url.replace("SECRET-TOKEN", HOOK)
    url = fresh_database(pg)
    work = tmp_path / "work"
    work.mkdir()
    (work / "rules.toml").write_text("[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\n")
    env = {**os.environ, **sink_env(ctl, hook.url), "PYTHONPATH": str(REPO),
           "KIT_TOKEN": TOKEN, "PGPASSWORD": DB_PW, "KIT_LOG_LEVEL": "DEBUG",
           "KIT_DATA_DIR": str(work / "data"), "HOME": str(work),
           "KIT_MANUAL_POSITIONS": str(work / "manual.json")}  # fmt: skip
    port = free_port()
    log = work / "serve.log"
    with log.open("wb") as fh:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kit", "serve", "--port", str(port), "--speed", "20",
            "--db", url, "--rules", "rules.toml", env=env, cwd=work, stdout=fh, stderr=fh,
        )  # fmt: skip
    frames: list[str] = []
    try:
        async with asyncio.timeout(120):
            while "kit serve: desk engine" not in log.read_text():
                assert proc.returncode is None, log.read_text()
                await asyncio.sleep(0.1)
            async with connect(f"ws://127.0.0.1:{port}", compression=None) as bad:
                await bad.send(json.dumps({"type": "auth", "token": WRONG, "client": "x"}))
                with contextlib.suppress(ConnectionClosed):  # refused, then closed
                    while True:
                        frames.append(text(await bad.recv()))
            async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
                await ws.send(json.dumps({"type": "auth", "token": TOKEN, "client": "leak"}))
                commands = [
                    {"cmd": "settings", "rules": {"delta": {"max_abs_delta": 0.25}}},
                    {"cmd": "kill", "on": True, "reason": "leak test"},
                    {"cmd": "kill", "on": False},
                    {"cmd": "ack", "seq": 999999},
                    {"cmd": "nonsense", "token": TOKEN},
                    {"cmd": "close_all"},
                ]
                for i, c in enumerate(commands):
                    await ws.send(json.dumps({"type": "command", "id": f"c{i}", **c}))
                loop = asyncio.get_running_loop()
                end = loop.time() + 2.0
                while loop.time() < end:
                    try:
                        async with asyncio.timeout(0.5):
                            frames.append(text(await ws.recv()))
                    except TimeoutError:
                        continue
        await until_sent(inbox, hook)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 60)
    code, db_out = await kit("db", "info", env={**env, "KIT_DB_URL": url.replace(
        "postgresql://postgres@", f"postgresql://postgres:{DB_PW}@")}, cwd=work)  # fmt: skip
    assert code == 0, db_out
    code, down = await kit("db", "info", env={**env, "KIT_DB_URL": f"postgresql://p:{DB_PW}@"
                                              "127.0.0.1:1/x"}, cwd=work)  # fmt: skip
    assert code == 2 and "127.0.0.1" in down

    replies = [json.loads(f) for f in frames]
    answers = {r["id"]: r for r in replies if r.get("type") == "reply"}
    assert answers["c1"]["ok"] and not answers["c4"]["ok"]  # the kill ran; nonsense refused
    assert any(r.get("type") == "error" and "unauthorized" in r["error"] for r in replies)
    assert any(r.get("type") == "snapshot" for r in replies)
    assert "DEBUG" in log.read_text()
    assert inbox.logins and inbox.logins[0][1] == SMTP_PW.encode()  # the password was used
    written = {p: p.read_bytes().decode("utf-8", "replace") for p in work.rglob("*")
               if p.is_file()}  # fmt: skip
    assert log in written and len(written) >= 2
    searched = {
        "service log": log.read_text(),
        "frames": "\n".join(frames),
        **{f"file {p}": text for p, text in written.items()},
        "database": database_text(url),
        "e-mail": "\n".join(m.as_string() for m in inbox.messages),
        "webhook bodies": "\n".join(body.decode() for _, _, body in hook.requests),
        "kit db info": db_out + down,
    }
    leaks = [(where, s) for where, text in searched.items() for s in SECRETS if s in text]
    assert leaks == []


def text(frame: str | bytes) -> str:
    assert isinstance(frame, str), frame  # the gateway speaks JSON text frames, as documented
    return frame


async def until_sent(inbox, webhook) -> None:
    """The kill switch's CRITICAL alert reaches both sinks (batched: give them a moment)."""
    async with asyncio.timeout(30):
        while not (inbox.messages and webhook.requests):
            await asyncio.sleep(0.1)
