"""Where everything the desk sees and does is kept: DuckDB by default, PostgreSQL for teams.

``open_store()`` picks the backend from a path or URL (or ``KIT_DB_URL`` /
``DB_CONNECTION_STRING``, else ``data/desk.duckdb``) and brings its schema up to date. The desk
never writes to it directly: a :class:`~kit.store.writer.StoreWriter` batches rows off the hot
path, and :class:`~kit.store.recorder.Recorder` turns desk events into rows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from kit.core import config
from kit.store.base import Store, StoreError, StoreUnavailableError
from kit.store.schema import SCHEMA_VERSION, TABLES

DEFAULT_PATH = Path("data/desk.duckdb")
ENV_VARS = ("KIT_DB_URL", "DB_CONNECTION_STRING")

__all__ = [
    "DEFAULT_PATH",
    "SCHEMA_VERSION",
    "TABLES",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "open_store",
    "store_target",
]


def store_target(target: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """The database to use: ``target``, else the environment, else ``desk.duckdb`` in the data
    directory (:func:`kit.core.config.data_dir`: ``KIT_DATA_DIR`` or the checkout's ``data/``)."""
    if target:
        return os.fspath(target)
    for var in ENV_VARS:
        if url := config.env(var, environ=env):
            return url
    return str(config.data_dir(environ=env) / DEFAULT_PATH.name)


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def check_target(target: str) -> str:
    """A DuckDB file path or a ``postgresql://`` / ``postgres://`` URL; anything else that looks
    like a URL (``mysql://``, ``postgresql+psycopg://``, a typo) is a StoreError that names only
    its scheme, never the rest (it may hold a password): DuckDB would otherwise take it for a
    file name, or try to download an extension for it."""
    if is_postgres(target):
        return target
    m = _SCHEME.match(target)
    if m and not re.match(r"^[A-Za-z]:[\\/]", target):  # C:\... is a Windows path
        raise StoreError(f"unsupported database URL scheme {m.group(0)!r}: use a DuckDB file "
                         "path or a postgresql:// URL")  # fmt: skip
    if Path(target).is_dir():
        raise StoreError(f"{target} is a directory: give a DuckDB file, e.g. {target}/desk.duckdb")
    return target


def open_store(target: str | os.PathLike[str] | None = None, *, migrate: bool = True,
               read_only: bool = False, threads: int | None = None) -> Store:  # fmt: skip
    """Open a DuckDB file or a ``postgresql://`` URL and apply pending migrations.

    An unreachable database raises :class:`StoreUnavailableError` only when ``migrate`` is set (the
    connection is made then); with ``migrate=False`` it is made on first use, which lets a
    desk start during a database outage and write later. ``threads`` caps DuckDB's own
    worker threads (default: one per core).
    """
    url = check_target(store_target(target))
    if is_postgres(url):
        from kit.store.postgres import PostgresStore

        store: Store = PostgresStore(url)
    else:
        from kit.store.duck import DuckDBStore

        if read_only and not Path(url).exists():
            raise StoreError(f"{url}: no such database file")
        store = DuckDBStore(url, read_only=read_only, threads=threads)
    if migrate and not read_only:
        store.migrate()
    return store
