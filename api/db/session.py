"""Database engine, sessions and migrations: the only place that knows which
database is behind tagtrail (SQLite by default, any SQLAlchemy URL through
`TAGTRAIL_DATABASE_URL`).

SQLite runs in WAL mode, and every transaction starts with BEGIN IMMEDIATE:
almost every API call writes (each read is itself audited), and taking the
write lock up front means two requests never both read the same audit index
or the same request version and then race to write. On PostgreSQL every
transaction takes one transaction-level advisory lock for the same effect.
The one exception is `read_only_factory`: sessions that only read (the
detector reading the intake log) begin DEFERRED and take no lock, so the
detector never holds intake up.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings

__all__ = ["make_engine", "migrate", "session_factory", "read_only_factory", "open_database", "transaction",
           "request_session"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Advisory lock key taken by every PostgreSQL transaction (any fixed 64-bit number).
_PG_LOCK_KEY = 0x7461677472616C
#: Execution option that marks a read-only session's connections (`read_only_factory`).
_READ_ONLY = "tagtrail_read_only"


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys, a busy timeout and
    BEGIN IMMEDIATE (the recipe from SQLAlchemy's pysqlite documentation)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below take effect
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "postgresql":
        @event.listens_for(engine, "begin")
        def _on_begin_pg(conn):  # pragma: no cover - exercised by tests/test_postgres.py
            # the same one-writer-at-a-time as SQLite's BEGIN IMMEDIATE: audit indexes
            # (max + 1) and request versions are read and written in one transaction
            if not conn.get_execution_options().get(_READ_ONLY):
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)" % _PG_LOCK_KEY)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_only_factory(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for pure reads (the detector reading the intake log): a plain, deferred
    BEGIN on SQLite (a WAL snapshot that neither waits for nor holds up writers) and no
    advisory lock on PostgreSQL. Never write through one: on SQLite a deferred
    transaction that turns into a writer can fail with "database is locked"."""
    engine = factory.kw["bind"]
    return sessionmaker(engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False)


def open_database(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """Create HOME if needed (0700), migrate, and return (engine, session factory).

    HOME is made private after the migration (`trails.home.secure_home`), so a
    SQLite database (and its -wal/-shm files) created just now with the
    process's umask ends 0600 too; SQLite gives the files it creates later the
    database file's mode."""
    from trails.home import private_dir, secure_home

    private_dir(settings.home)
    engine = make_engine(settings.database_url)
    migrate(engine)
    secure_home(settings.home)
    return engine, session_factory(engine)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session:
        with session.begin():
            yield session


@contextmanager
def request_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for one web request (the API's and the console's dependency). Nothing is committed
    here: the endpoint commits its unit of work, and whatever it left (an error, a refusal) is rolled
    back when the response is done, so no request leaves a transaction open on the one writer lock."""
    session = factory()
    try:
        yield session
    finally:
        try:
            session.rollback()
        finally:
            session.close()
