"""A throwaway PostgreSQL server that the test suite starts itself (tagtrail issue 11).

CI must test PostgreSQL for real, on a clean machine, as root. The server binaries
come first from the `pgserver` package (a test dependency: its wheel carries
PostgreSQL 16 and the libraries it needs), then from the distribution
(`/usr/lib/postgresql/<N>/bin`, newest first, or `pg_ctl` on PATH).
`TAGTRAIL_TEST_PG_BIN=<dir>` replaces that list with one directory (to try other
binaries, or to prove the failure path with a directory that does not exist).

PostgreSQL refuses to run as root, so under root every server command runs as the
`nobody` account (Python's own setuid/setgid in `subprocess`: no runuser, no new
account). If `nobody` cannot reach pgserver's binaries (a clone under /root, say),
they are copied into the server's private directory first (34 MB, ~0.3 s).

The server listens on no TCP address at all: one Unix socket in a private
directory (0700). It is started once per test session (per xdist worker, lazily,
only if a test asks for it); each test gets a fresh database. It is stopped and its
directory removed at the end of the session, whatever the tests did.

When no server can be started, a test that needs it fails with every candidate's
reason if the environment variable CI is set, and skips with that reason otherwise
(`missing_part`).
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import pytest

__all__ = ["BIN_ENV", "Candidate", "PgServer", "PgUnavailable", "candidates", "first_server", "missing_part",
           "pg_server", "pg_url", "running", "start", "stop"]

BIN_ENV = "TAGTRAIL_TEST_PG_BIN"
UNPRIVILEGED = "nobody"
PORT = 5432  # names the socket file only: the server has no TCP listener
SUPERUSER = "postgres"
_SOCKET_MAX = 107  # sun_path is 108 bytes on Linux, NUL included
_TIMEOUT_S = 120
# A throwaway cluster: nothing needs to survive a crash, so skip the flushes (faster tests).
_CONF = """
listen_addresses = ''
unix_socket_directories = '{socket_dir}'
unix_socket_permissions = 0700
port = {port}
fsync = off
synchronous_commit = off
full_page_writes = off
"""


class PgUnavailable(RuntimeError):
    """No PostgreSQL server could be started; the message says why."""


def missing_part(reason: str) -> NoReturn:
    """A real part the tests need (a server, a mount) is missing.

    CI must run everything, so with CI set this fails the test with `reason`;
    on a developer's machine it skips with `reason`.
    """
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Candidate:
    """Where server binaries may be: `bindir`, or None with `missing` saying why not."""

    source: str
    bindir: Path | None
    missing: str = ""


@dataclass(frozen=True)
class PgServer:
    """A running server: binaries actually run, its private directory and version."""

    source: str
    bindir: Path
    root: Path  # private: data/, the socket, server.log
    version: str  # `postgres --version`, e.g. "postgres (PostgreSQL) 16.2"
    port: int = PORT

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` on this server (Unix socket, trust auth)."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={quote(str(self.root), safe='/')}&port={self.port}"

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg connection (autocommit) as the superuser."""
        import psycopg

        return psycopg.connect(host=str(self.root), port=self.port, user=SUPERUSER, dbname=database, autocommit=True)

    def postmaster_pid(self) -> int | None:
        """The server's pid from data/postmaster.pid, or None if there is none."""
        return _postmaster_pid(self.data)


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None


def _pgserver_candidate() -> Candidate:
    spec = importlib.util.find_spec("pgserver")  # located, not imported: importing it touches nothing, but need not
    if spec is None or not spec.submodule_search_locations:
        return Candidate("pgserver", None, "the pgserver package is not installed (it is in the test extras: "
                                           "pip install -e '.[test]')")
    bindir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (bindir / "initdb").is_file():
        return Candidate("pgserver", None, f"pgserver is installed but has no {bindir / 'initdb'}")
    return Candidate("pgserver", bindir)


def _distribution_candidates() -> list[Candidate]:
    def major(p: Path) -> int:
        return int(p.parent.name) if p.parent.name.isdigit() else -1

    found = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()),
                   key=major, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).resolve().parent / "initdb").is_file():
        found.append(Path(on_path).resolve().parent)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        return [Candidate("distribution", None, "no /usr/lib/postgresql/<N>/bin/initdb and no pg_ctl on PATH")]
    return [Candidate("distribution", p) for p in unique]


def candidates() -> tuple[Candidate, ...]:
    """Where to look for server binaries, in order: TAGTRAIL_TEST_PG_BIN alone if set,
    else pgserver's bundled binaries, then the distribution's."""
    forced = os.environ.get(BIN_ENV)
    if forced:
        return (Candidate(BIN_ENV, Path(forced)),)
    return (_pgserver_candidate(), *_distribution_candidates())


def _as_user() -> dict[str, Any]:
    """subprocess arguments that drop root to `nobody` (PostgreSQL refuses root); none otherwise."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        raise PgUnavailable(f"running as root and there is no {UNPRIVILEGED!r} account to run PostgreSQL as "
                            "(it refuses to run as root)") from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _run(args: list[str], *, root: Path, log: Path) -> str:
    """Run a server command (as `nobody` under root) with output to `log`, never a pipe:
    `pg_ctl start` leaves the server holding whatever it was given. Returns the output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    name = Path(args[0]).name + (f" {args[-1]}" if Path(args[0]).name == "pg_ctl" else "")  # "pg_ctl start"
    start_at = log.stat().st_size if log.exists() else 0
    try:
        with log.open("ab") as out:
            done = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                  env=env, timeout=_TIMEOUT_S, **_as_user())
    except FileNotFoundError:
        raise PgUnavailable(f"{args[0]} not found") from None
    except PermissionError as e:
        who = f"{UNPRIVILEGED!r}" if os.geteuid() == 0 else "this user"
        raise PgUnavailable(f"{who} cannot run {args[0]}: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise PgUnavailable(f"{name} did not finish in {_TIMEOUT_S} s") from None
    with log.open("rb") as f:
        f.seek(start_at)
        text = f.read().decode(errors="replace")
    if done.returncode != 0:
        tail = " | ".join(text.strip().splitlines()[-6:])
        raise PgUnavailable(f"{name} exited with status {done.returncode}: {tail}")
    return text


def _stage_pgserver(bindir: Path, into: Path) -> Path:
    """Copy pgserver's install where `nobody` can reach it; returns the copy's bin directory.
    Its binaries find their libraries at $ORIGIN/../../../pgserver.libs and their
    share/ and lib/ relative to bin/, so the copy keeps that layout."""
    install, libs = bindir.parent, bindir.parents[2] / "pgserver.libs"
    for d in (into, into / "pgserver"):  # explicit modes: the process umask may be 077 (trails.home)
        d.mkdir()
        d.chmod(0o755)
    shutil.copytree(install, into / "pgserver" / install.name, symlinks=True)
    if libs.is_dir():
        shutil.copytree(libs, into / libs.name, symlinks=True)
    return into / "pgserver" / install.name / bindir.name


def _private_root() -> Path:
    """A new directory for one server (0700, owned by the account the server runs as)."""
    who = _as_user()
    root = Path(tempfile.mkdtemp(prefix="tagtrail-pg-"))
    if len(str(root / f".s.PGSQL.{PORT}")) > _SOCKET_MAX:
        shutil.rmtree(root)
        raise PgUnavailable(f"socket path {root}/.s.PGSQL.{PORT} is longer than {_SOCKET_MAX} bytes: "
                            "set TMPDIR to a shorter directory")
    if who:
        os.chown(root, who["user"], who["group"])
    return root


def start(candidate: Candidate, *, stage: bool | None = None) -> PgServer:
    """Start a private server from `candidate`'s binaries.

    stage: copy pgserver's binaries into the server's directory first; None = only if
    the unprivileged account cannot run them where they are. Raises PgUnavailable
    with the reason (and leaves nothing behind) if the server does not come up.
    """
    if candidate.bindir is None:
        raise PgUnavailable(candidate.missing)
    if not (candidate.bindir / "initdb").is_file() or not (candidate.bindir / "pg_ctl").is_file():
        raise PgUnavailable(f"no initdb and pg_ctl in {candidate.bindir}")
    try:
        import psycopg
    except ImportError:
        raise PgUnavailable("psycopg is not installed (it is in the test extras: pip install -e '.[test]')") from None
    root = _private_root()
    try:
        return _start_in(root, candidate, stage)
    except BaseException as e:
        _remove(root)
        if isinstance(e, OSError):
            raise PgUnavailable(f"{type(e).__name__}: {e}") from e
        if isinstance(e, psycopg.Error):
            raise PgUnavailable(f"the server started but does not answer: {e}") from e
        raise


def _start_in(root: Path, candidate: Candidate, stage: bool | None) -> PgServer:
    """initdb, configure (socket only, no flushes) and start in `root`; see `start`."""
    bindir, log = candidate.bindir, root / "commands.log"
    assert bindir is not None
    version = None
    if not stage:
        try:
            version = _run([str(bindir / "postgres"), "--version"], root=root, log=log).strip()
        except PgUnavailable:
            if stage is False or candidate.source != "pgserver":
                raise
    if version is None:
        bindir = _stage_pgserver(bindir, root / "install")
        version = _run([str(bindir / "postgres"), "--version"], root=root, log=log).strip()
    server = PgServer(candidate.source, bindir, root, version)
    _run([str(bindir / "initdb"), "-D", str(server.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
          "--no-locale", "--no-sync"], root=root, log=log)
    with (server.data / "postgresql.conf").open("a") as conf:
        conf.write(_CONF.format(socket_dir=str(root).replace("'", "''"), port=PORT))
    server_log = root / "server.log"  # the server's own log, which pg_ctl opens as the server's user
    try:
        _run([str(bindir / "pg_ctl"), "-D", str(server.data), "-l", str(server_log), "-w", "-t", "60", "start"],
             root=root, log=log)
    except PgUnavailable as e:
        said = server_log.read_text(errors="replace").strip().splitlines()[-6:] if server_log.exists() else []
        raise PgUnavailable(f"{e}; server log: {' | '.join(said) or '(empty)'}") from None
    with server.connect() as conn:
        conn.execute("SELECT 1")
    return server


def stop(server: PgServer) -> None:
    """Stop the server (fast shutdown) and remove its directory. Never raises: it runs
    in teardown, after failures too; `_remove` kills whatever pg_ctl did not stop."""
    if server.postmaster_pid() is not None:
        try:
            _run([str(server.bindir / "pg_ctl"), "-D", str(server.data), "-m", "fast", "-w", "-t", "30", "stop"],
                 root=server.root, log=server.root / "commands.log")
        except PgUnavailable:
            pass
    _remove(server.root)


def _remove(root: Path) -> None:
    """Kill the server in `root` if one still runs (its whole process group: pg_ctl starts
    the postmaster as a session leader), then delete `root`."""
    pid = _postmaster_pid(root / "data")
    if pid is not None and _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.05)
    shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def first_server(options: tuple[Candidate, ...]) -> PgServer:
    """Start a server from the first candidate that works; PgUnavailable names every reason."""
    reasons = []
    for c in options:
        try:
            return start(c)
        except PgUnavailable as e:
            reasons.append(f"{c.source} ({c.bindir}): {e}" if c.bindir else f"{c.source}: {e}")
    raise PgUnavailable("no PostgreSQL server could be started for the tests: " + "; ".join(reasons)
                        + f". Install the test extras (pip install -e '.[test]' brings pgserver) or set {BIN_ENV} "
                          "to a PostgreSQL bin directory")


@contextmanager
def running(candidate: Candidate, *, stage: bool | None = None) -> Iterator[PgServer]:
    """`start` ... `stop`, the stop whatever the body does."""
    server = start(candidate, stage=stage)
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's server, started on first use; see the module docstring."""
    try:
        server, why = first_server(candidates()), ""
    except PgUnavailable as e:
        why = str(e)
    if why:  # outside the except block: the report is the reason, not a chained traceback
        missing_part(why)
    try:
        yield server
    finally:
        stop(server)


_names = itertools.count(1)


@pytest.fixture()
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped afterwards: its SQLAlchemy URL."""
    name = f"tagtrail_{os.getpid()}_{next(_names)}"
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.url(name)
    finally:
        with pg_server.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
