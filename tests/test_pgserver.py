"""LocalPostgres against a real server (no mocks): the point of the helper is that the PostgreSQL
backend and its outage handling can be tested for real, so the helper itself is tested the same way.
One module-scoped server keeps the file fast; only the context-manager and start-failure tests pay
for their own ``initdb``."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kit.store.pgserver import LocalPostgres, find_bindir


@pytest.fixture(scope="module")
def pg() -> Iterator[LocalPostgres]:
    server = LocalPostgres().start()
    try:
        yield server
    finally:
        server.cleanup()


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, connect_timeout=5, autocommit=True)


def test_binaries_are_found() -> None:
    bindir = find_bindir()
    assert all((bindir / name).exists() for name in ("initdb", "pg_ctl", "postgres"))


def test_url_is_a_local_tcp_dsn(pg: LocalPostgres) -> None:
    expected_user = "postgres" if os.geteuid() == 0 else pg.user
    assert pg.url == f"postgresql://{expected_user}@127.0.0.1:{pg.port}/postgres"
    assert pg.running


def test_create_insert_select(pg: LocalPostgres) -> None:
    with _connect(pg.url) as conn:
        conn.execute("CREATE TABLE roundtrip (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO roundtrip VALUES (%s, %s), (%s, %s)", (1, "spx", 2, "ndx"))
        rows = conn.execute("SELECT id, name FROM roundtrip ORDER BY id").fetchall()
        assert rows == [(1, "spx"), (2, "ndx")]
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)


def test_outage_stop_then_start_keeps_url_and_data(pg: LocalPostgres) -> None:
    url = pg.url
    with _connect(url) as conn:
        conn.execute("CREATE TABLE survivor (v int)")
        conn.execute("INSERT INTO survivor VALUES (42)")
    held = _connect(url)

    pg.stop()
    assert not pg.running
    with pytest.raises(psycopg.OperationalError):
        _connect(url)
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")  # an open connection is severed by a fast shutdown
    held.close()
    pg.stop()  # idempotent

    pg.start()
    assert pg.running
    assert pg.url == url
    with _connect(url) as conn:
        assert conn.execute("SELECT v FROM survivor").fetchall() == [(42,)]


def test_restart_keeps_url_and_data(pg: LocalPostgres) -> None:
    url = pg.url
    with _connect(url) as conn:
        conn.execute("CREATE TABLE across_restart (v text)")
        conn.execute("INSERT INTO across_restart VALUES ('kept')")
    pg.restart()
    assert pg.url == url
    with _connect(url) as conn:
        assert conn.execute("SELECT v FROM across_restart").fetchone() == ("kept",)


def test_immediate_stop_recovers_committed_data(pg: LocalPostgres) -> None:
    with _connect(pg.url) as conn:
        conn.execute("CREATE TABLE crashy (v int)")
        conn.execute("INSERT INTO crashy VALUES (7)")
        # synchronous_commit=off: a crash may drop the last ~200 ms of commits; flush them
        conn.execute("CHECKPOINT")
    pg.stop("immediate")
    pg.start()
    with _connect(pg.url) as conn:
        assert conn.execute("SELECT v FROM crashy").fetchall() == [(7,)]


def test_bad_stop_mode_is_rejected(pg: LocalPostgres) -> None:
    with pytest.raises(ValueError, match="stop mode"):
        pg.stop("kill")  # type: ignore[arg-type]
    assert pg.running


def test_context_manager_removes_its_directory() -> None:
    with LocalPostgres() as server:
        base = server.base
        assert server.running
        assert base.is_dir()
        with _connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not server.running
    assert not base.exists()


def test_given_directory_is_not_removed() -> None:
    # mkdtemp under /tmp is reachable by the postgres user even when the tests run as root
    given = Path(tempfile.mkdtemp(prefix="kit-pg-test-"))
    try:
        server = LocalPostgres(directory=given)
        assert server.base == given.resolve()
        server.cleanup()
        assert given.is_dir()
    finally:
        shutil.rmtree(given, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to 'postgres'")
def test_root_rejects_directory_postgres_cannot_reach(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)  # what pytest gives root; the postgres user cannot search it
    with pytest.raises(RuntimeError, match="cannot reach"):
        LocalPostgres(directory=tmp_path / "pg")


def test_start_failure_quotes_server_log() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = LocalPostgres(port=port)
        try:
            with pytest.raises(RuntimeError, match="failed to start") as info:
                server.start()
            assert "tail of" in str(info.value)
            assert "could not" in str(info.value)  # the bind error from postgres.log
            assert server.port == port  # an explicit port is never swapped
        finally:
            server.cleanup()
    assert not server.base.exists()
