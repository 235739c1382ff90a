"""A throwaway local PostgreSQL server for tests, benchmarks and trying the PostgreSQL backend.

Why not a container or a shared database: tests must be hermetic and fast, and an outage test needs
to stop and restart *its own* server without disturbing anyone. Debian's ``postgresql`` package
already ships everything needed (``initdb``, ``pg_ctl``, ``postgres``), so this module just drives
those binaries against a private data directory:

* the binaries live in ``/usr/lib/postgresql/<version>/bin`` (Debian keeps them off ``PATH``;
  ``/usr/bin`` only has the ``pg_wrapper`` front ends), so the highest installed version is used,
  falling back to ``PATH`` for other distributions and Homebrew;
* the server is tuned for throwaway data: ``fsync``, ``synchronous_commit`` and
  ``full_page_writes`` are off, ``initdb`` runs with ``--no-sync`` and ``trust`` authentication;
* it listens on TCP ``127.0.0.1`` only (never on a public interface) and puts its Unix socket in
  its own directory, so it does not clash with a system cluster in ``/var/run/postgresql``;
* the port is chosen once and kept across :meth:`LocalPostgres.restart`, so clients reconnect to
  the same :attr:`LocalPostgres.url` after an outage.

PostgreSQL refuses to run as root. When the process is root (the usual case in CI containers),
``initdb`` and ``pg_ctl`` are run as the ``postgres`` system user (via ``runuser``, or Python's
``subprocess`` ``user=`` switch when ``runuser`` is missing) and the files are owned by that user.

Layout of the base directory::

    <base>/data          the cluster (PGDATA)
    <base>/run           Unix socket directory
    <base>/postgres.log  server log (its tail is quoted when start-up fails)

Typical use::

    with LocalPostgres() as pg:
        with psycopg.connect(pg.url) as conn:
            ...
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import weakref
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

__all__ = ["LocalPostgres", "find_bindir"]

StopMode = Literal["smart", "fast", "immediate"]

DEBIAN_ROOT = Path("/usr/lib/postgresql")
_BINARIES = ("initdb", "pg_ctl", "postgres")
_START_TIMEOUT_S = 30
_LOG_TAIL_LINES = 40
_BIND_ERRORS = ("could not bind", "Address already in use")

# Servers that are still running, stopped at interpreter exit so that an aborted test run (Ctrl-C,
# a crashed fixture) does not leave orphan postmasters holding ports and temp directories.
_live: weakref.WeakSet[LocalPostgres] = weakref.WeakSet()


def _version_key(path: Path) -> tuple[int, ...]:
    """Sort ``/usr/lib/postgresql/<ver>`` numerically, so 16 beats 9.6 (string order would not)."""
    return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (-1,)


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Debian's versioned directories come first (highest version wins) because ``/usr/bin`` on Debian
    has only wrappers for the client tools, not ``initdb``/``postgres``; then ``PATH``.
    """
    if DEBIAN_ROOT.is_dir():
        for version_dir in sorted(DEBIAN_ROOT.iterdir(), key=_version_key, reverse=True):
            bindir = version_dir / "bin"
            if all(os.access(bindir / name, os.X_OK) for name in _BINARIES):
                return bindir
    found = [shutil.which(name) for name in _BINARIES]
    if all(found):
        dirs = {Path(p).resolve().parent for p in found if p}
        if len(dirs) == 1:
            return dirs.pop()
    missing = [name for name, path in zip(_BINARIES, found, strict=True) if not path]
    raise RuntimeError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and on PATH; "
        f"missing: {', '.join(missing) or 'a common directory for ' + ', '.join(_BINARIES)}). "
        "Install the Debian package: apt-get install postgresql"
    )


def _free_port() -> int:
    """Ask the kernel for an unused TCP port on 127.0.0.1 (racy, hence the retry in ``start``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid``/``gid`` can search (``x``) ``path`` and every parent, judged by mode bits.

    ``os.access`` is useless here because it answers for the calling user (root).
    """
    for part in (path, *path.parents):
        st = part.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


class LocalPostgres:
    """A private PostgreSQL cluster on 127.0.0.1, created on demand and removable afterwards.

    ``directory`` is the base directory (see the module docstring for its layout). When omitted a
    fresh ``kit-pg-*`` temporary directory is created and :meth:`cleanup` (or leaving the context
    manager) deletes it; a given directory is never deleted, and an existing cluster in it is
    reused, which lets benchmarks keep a loaded database between runs.

    As root the cluster is owned by the ``postgres`` user, so a given ``directory`` must be
    reachable by that user: every parent directory searchable. pytest's ``tmp_path`` is not (it is
    ``0700`` and root-owned); leave ``directory`` as ``None`` there, which creates the directory
    under the system temp dir.

    ``port`` defaults to a free port chosen once; it stays the same across :meth:`stop` /
    :meth:`start` / :meth:`restart` so that :attr:`url` stays valid through an outage.
    """

    def __init__(self, directory: str | Path | None = None, port: int | None = None) -> None:
        self.bindir = find_bindir()
        self._as_root = os.geteuid() == 0
        self._runas: list[str] = []
        self._popen_user: dict[str, int] = {}
        if self._as_root:
            self.user = "postgres"
            self._pw = self._postgres_account()
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
            self._pw = None
        self._owns_directory = directory is None
        if directory is None:
            self.base = Path(tempfile.mkdtemp(prefix="kit-pg-"))
        else:
            self.base = Path(directory).resolve()
            self.base.mkdir(parents=True, exist_ok=True)
        self.data = self.base / "data"
        self.socket_dir = self.base / "run"
        self.log_path = self.base / "postgres.log"
        self._port_fixed = port is not None
        self.port = port if port is not None else _free_port()
        self._ever_started = False
        self._prepare_base()

    # ----------------------------------------------------------------------------------- setup

    def _postgres_account(self) -> pwd.struct_passwd:
        """Find the ``postgres`` account and a way to run commands as it, or explain what is
        missing. ``runuser`` is preferred (it also sets up supplementary groups the way a login
        would); Python's ``subprocess`` ``user=``/``group=`` is the fallback for minimal images."""
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "running as root, but PostgreSQL refuses to run as root and there is no 'postgres' "
                "system user to run it as; install the Debian package 'postgresql' (it creates "
                "the user) or run the tests as a non-root user"
            ) from None
        runuser = shutil.which("runuser") or next(
            (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None
        )
        if runuser:
            self._runas = [runuser, "-u", "postgres", "--"]
        elif hasattr(os, "setresuid"):
            self._popen_user = {"user": account.pw_uid, "group": account.pw_gid}
        else:  # pragma: no cover - every Linux has setresuid
            raise RuntimeError(
                "running as root, but neither 'runuser' (Debian package util-linux) nor a "
                "setuid-capable subprocess is available to run PostgreSQL as 'postgres'"
            )
        return account

    def _prepare_base(self) -> None:
        """Create the socket directory and, as root, hand the base directory to ``postgres``.

        The chown comes first so that ``initdb`` (running as postgres) can create ``data/`` with
        the 0700 mode it insists on, and ``pg_ctl`` can write the log file next to it.
        """
        self.socket_dir.mkdir(exist_ok=True)
        if self._pw is None:
            return
        uid, gid = self._pw.pw_uid, self._pw.pw_gid
        if not _traversable_by(self.base.parent, uid, gid):
            raise RuntimeError(
                f"running as root: PostgreSQL runs as 'postgres', which cannot reach {self.base} "
                "(a parent directory is not searchable by it, e.g. pytest's 0700 tmp_path); "
                "pass directory=None to use a fresh directory under the system temp dir"
            )
        for path in (self.base, self.socket_dir):
            os.chown(path, uid, gid)
        self.base.chmod(0o700)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary (as ``postgres`` when we are root), output captured.

        ``cwd`` is the base directory because a tool running as postgres cannot ``chdir`` back to
        root's home and would warn about it.
        """
        cmd = [*self._runas, str(self.bindir / args[0]), *args[1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.setdefault("LC_ALL", "C")
        proc = subprocess.run(
            cmd,
            cwd=self.base,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            **self._popen_user,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(cmd)} failed with exit code {proc.returncode}:\n"
                f"{proc.stdout}{proc.stderr}".rstrip()
            )
        return proc

    def _initdb(self) -> None:
        """Create the cluster unless the directory already holds one (a reused ``directory``)."""
        if (self.data / "PG_VERSION").exists():
            return
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            self.user,
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )

    # ------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """A libpq/psycopg 3 DSN for the ``postgres`` database over TCP (trust auth, no
        password)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        """Whether the postmaster is up, asked of ``pg_ctl status`` (which checks the pid file and
        that the pid is alive), so a server killed from outside is reported correctly."""
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def _server_options(self) -> str:
        return " ".join(
            [
                "-h 127.0.0.1",
                f"-p {self.port}",
                f"-k {shlex.quote(str(self.socket_dir))}",
                "-F",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(server log is empty)"

    def start(self) -> Self:
        """Initialise the cluster if needed and start the server, waiting until it accepts
        connections. A no-op when already running; returns ``self`` for one-line fixtures.

        If the port was picked automatically and another process grabbed it before the first
        start (the free-port probe is inherently racy), a new port is tried; after the first
        successful start the port never changes, so :attr:`url` stays stable.
        """
        if self.running:
            return self
        self._initdb()
        attempts = 1 if (self._port_fixed or self._ever_started) else 3
        for attempt in range(attempts):
            proc = self._run(
                "pg_ctl",
                "start",
                "-D",
                str(self.data),
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-l",
                str(self.log_path),
                "-o",
                self._server_options(),
                check=False,
            )
            if proc.returncode == 0:
                self._ever_started = True
                _live.add(self)
                return self
            tail = self._log_tail()
            if attempt + 1 < attempts and any(err in tail for err in _BIND_ERRORS):
                self.port = _free_port()
                continue
            raise RuntimeError(
                f"PostgreSQL failed to start on 127.0.0.1:{self.port} "
                f"(pg_ctl exit code {proc.returncode}).\n"
                f"pg_ctl output:\n{(proc.stdout + proc.stderr).strip()}\n"
                f"tail of {self.log_path}:\n{tail}"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server and wait for it to exit. ``fast`` disconnects clients and rolls back
        open transactions; ``immediate`` simulates a crash (recovery runs on the next start);
        ``smart`` waits for clients to disconnect. A no-op when not running.

        Because the server runs with ``synchronous_commit=off``, an ``immediate`` stop can lose
        transactions committed in the last few hundred milliseconds, exactly as a crash of such a
        server would; run ``CHECKPOINT`` first if a test needs them to survive.
        """
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"stop mode must be smart, fast or immediate, not {mode!r}")
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w")
        _live.discard(self)

    def restart(self) -> Self:
        """Stop (fast) and start again on the same port, e.g. to simulate an outage."""
        self.stop("fast")
        return self.start()

    def cleanup(self) -> None:
        """Stop the server and delete the base directory if this object created it."""
        self.stop("fast")
        if self._owns_directory:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"LocalPostgres(url={self.url!r}, base={str(self.base)!r})"


@atexit.register
def _stop_leftovers() -> None:
    """Last-resort shutdown of servers the caller forgot (or could not) stop."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop("immediate")
