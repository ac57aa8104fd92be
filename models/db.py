"""Engines and sessions for PostgreSQL (production) and SQLite (embedded)."""
from __future__ import annotations

import random

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.ids import make_id

# How a SQLite transaction begins (an execution option read by the "begin" listener).
SQLITE_BEGIN = "shutter_sqlite_begin"
IMMEDIATE = "IMMEDIATE"
DEFERRED = "DEFERRED"


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _setup_sqlite(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        # No server-side prepared statements: safe behind pgbouncer's transaction pooling.
        connect_args={"prepare_threshold": None},
        **kwargs,
    )


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # PostgreSQL makes ids with a database function; give SQLite the same name.
        dbapi_connection.create_function("shutter_next_id", 0, make_id)
        # SQLite's own lower() folds ASCII only; user search must match "Élodie" as PostgreSQL does.
        dbapi_connection.create_function("lower", 1, lambda s: s.lower() if s is not None else None,
                                         deterministic=True)
        # Let SQLAlchemy, not the driver, decide when transactions begin (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        # IMMEDIATE takes the write lock up front: in WAL mode a DEFERRED transaction
        # that reads and then writes fails (SQLITE_BUSY_SNAPSHOT) when another writer
        # committed in between, so only transactions that never write begin DEFERRED.
        mode = connection.get_execution_options().get(SQLITE_BEGIN, IMMEDIATE)
        connection.exec_driver_sql(f"BEGIN {mode}")


def begin_read(session: Session) -> None:
    """Start the session's next transaction without SQLite's write lock (it must not write).

    For work that reads slowly before it writes (a password check): call begin_write after it.
    """
    if not session.in_transaction():
        session.connection(execution_options={SQLITE_BEGIN: DEFERRED})


def begin_write(session: Session) -> None:
    """End the session's read transaction, if any, and begin one that may write
    (IMMEDIATE on SQLite: it waits for the write lock here, not halfway through)."""
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={SQLITE_BEGIN: IMMEDIATE})


class Database:
    """The primary engine for writes and optional read replicas for reads."""

    def __init__(self, url: str, replica_urls: list[str] | None = None, session_info: dict | None = None) -> None:
        """`session_info`: what every session's `info` starts with (the services, for app/platform/aftercommit.py)."""
        self.url = url
        self.engine = make_engine(url)
        self.replicas = [make_engine(u) for u in (replica_urls or [])]
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info=session_info)
        # Reads take no write lock on SQLite (PostgreSQL ignores the option).
        self._read_only_sessions = sessionmaker(self.engine, expire_on_commit=False, info=session_info,
                                                execution_options={SQLITE_BEGIN: DEFERRED})
        self._replica_sessions = [sessionmaker(e, expire_on_commit=False, info=session_info) for e in self.replicas]

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self, *, read_only: bool = False) -> Session:
        """A session on the primary. read_only: its transactions only read, so on SQLite
        they take no write lock (begin_write first, for a transaction that writes)."""
        return self._read_only_sessions() if read_only else self._sessions()

    def read_session(self) -> Session:
        """A session on a replica when there are any (reads that may lag a little)."""
        if self._replica_sessions:
            return random.choice(self._replica_sessions)()
        return self._read_only_sessions()

    def dispose(self) -> None:
        self.engine.dispose()
        for engine in self.replicas:
            engine.dispose()
