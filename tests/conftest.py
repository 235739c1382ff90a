"""Shared test helpers. Hypothesis profile: deterministic in CI (derandomize) so a red run is
reproducible, with enough examples to find symbology and pricing edge cases."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")


# --- stores: the same tests on a DuckDB file and on a real PostgreSQL server ---

import itertools  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import psycopg  # noqa: E402
import pytest  # noqa: E402

from kit.store.pgserver import LocalPostgres  # noqa: E402

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    """One PostgreSQL server (Debian's binaries, initdb in a temp dir) for the whole run."""
    server = LocalPostgres().start()
    try:
        yield server
    finally:
        server.cleanup()


def fresh_database(server: LocalPostgres) -> str:
    """A new empty database on ``server``; returns its URL (tests never share tables)."""
    name = f"kit_test_{next(_databases)}"
    with psycopg.connect(server.url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["duckdb", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs twice: on a DuckDB file and on a fresh PostgreSQL database."""
    if request.param == "duckdb":
        return str(tmp_path / "desk.duckdb")
    return fresh_database(request.getfixturevalue("pg_server"))


@pytest.fixture(scope="session")
def auto_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    """One full auto session through the CLI recorded into a DuckDB file: its JSON lines (the
    interface others read) and the database (what the journal reads)."""
    db = tmp_path_factory.mktemp("auto-day") / "desk.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "run", "--feed", "sim", "--auto", "--jsonl", "--db", str(db)],
        capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in proc.stdout.splitlines()], db


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright drives Debian's Chromium (`.ci/run` installs it), headless."""
    from kit.app.launch import CHROMIUM, CHROMIUM_ARGS

    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": list(CHROMIUM_ARGS)}
