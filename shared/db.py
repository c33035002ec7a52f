"""The store: async SQLAlchemy 2.x engines, one per service.

Each service owns its tables and never reads another's:

- PostgreSQL (psycopg 3): one database, one schema per service (`orbit`, `provisioning`...,
  with `SKYBRIDGE_DB_SCHEMA_PREFIX` in front for isolated test runs), selected with the
  connection's `search_path`, so models and migrations use plain table names;
- SQLite (the embedded default, aiosqlite): SQLite has no schemas, so each service gets its
  own file beside the configured one (`var/skybridge-orbit.db`...). Every connection sets
  WAL, foreign keys and a busy timeout, and transactions start with `BEGIN IMMEDIATE`, so
  two writers queue on the lock instead of failing when a read turns into a write.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow
    from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 10_000
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def is_outage(error: BaseException) -> bool:
    """True when `error` says the database is out of reach: it went away (a restart, a
    failover, a killed connection), refuses connections, or every pooled connection is busy
    past the pool's timeout. Such a failure is the store's, not the caller's, and a retry
    may succeed (a write retried with its request_id replays or runs once), so the server
    answers UNAVAILABLE, which gRPC clients and the suite's retry policy retry.

    Looks through SQLAlchemy's wrapper (`.orig`) and the exception chain. An SQLite
    "database is locked" (the busy timeout passed) counts; other SQLite errors do not.
    """
    import sqlite3

    import psycopg
    from sqlalchemy import exc

    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, exc.TimeoutError | exc.DisconnectionError
                      | psycopg.OperationalError | psycopg.InterfaceError
                      | ConnectionError | TimeoutError):
            return True
        if isinstance(current, sqlite3.OperationalError) and any(
                word in str(current) for word in ("locked", "busy", "unable to open")):
            return True
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return False


@dataclass(frozen=True)
class StoreLocation:
    """Where one service's tables live."""

    url: str
    schema: str | None  # PostgreSQL schema; None on SQLite

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


def locate(database_url: str, service: str, prefix: str = "") -> StoreLocation:
    """The URL and schema for `service` given the suite's database URL."""
    name = f"{prefix}{service}"
    if not _SCHEMA.match(name):
        raise ValueError(f"schema name {name!r} must match {_SCHEMA.pattern}")
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            raise ValueError("SQLite needs a file: services share it across connections")
        path = Path(database)
        per_service = path.with_name(f"{path.stem}-{name}{path.suffix or '.db'}")
        return StoreLocation(url.set(database=str(per_service)).render_as_string(False), None)
    return StoreLocation(url.render_as_string(hide_password=False), name)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # `dbapi_connection` is SQLAlchemy's adapter around the aiosqlite connection, which
    # SQLAlchemy types only as the minimal DBAPI protocol (no `isolation_level`).
    # Let SQLAlchemy's "begin" event decide how a transaction starts (BEGIN IMMEDIATE).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(location: StoreLocation, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for one service's store."""
    if location.is_sqlite:
        database = cast(str, make_url(location.url).database)  # `locate` made it a file
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            location.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        location.url,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_pre_ping=True,
        connect_args={"options": f"-csearch_path={location.schema}",
                      "application_name": application_name(cast(str, location.schema))},
    )


def application_name(schema: str) -> str:
    """What PostgreSQL shows for our connections (``pg_stat_activity.application_name``):
    the schema they work in, so an operator (or a test tearing a schema down) can find them."""
    return f"skybridge:{schema}"[:63]


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class FastReads:
    """A few autocommit psycopg connections for hot single statements (PostgreSQL): no
    SQLAlchemy session, no BEGIN/COMMIT round trips around it (one statement is its own
    transaction, so row locks it takes are released as it ends, not when the client gets
    round to sending COMMIT), and the statement is prepared on each connection. Connections
    open on demand; a broken one is dropped and a read (never a write) retried once.
    """

    def __init__(self, conninfo: str, options: str, size: int):
        self.conninfo = conninfo
        self.options = options
        self.name = application_name(options.removeprefix("-csearch_path="))
        self.size = size
        self._idle: list[psycopg.AsyncConnection[TupleRow]] = []
        self._opened = 0
        self._freed = asyncio.Condition()

    async def _acquire(self) -> psycopg.AsyncConnection[TupleRow]:
        async with self._freed:
            while not self._idle and self._opened >= self.size:
                await self._freed.wait()
            if self._idle:
                return self._idle.pop()
            self._opened += 1
        try:
            import psycopg

            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True,
                                                         options=self.options,
                                                         application_name=self.name)
        except BaseException:
            await self._release(None)
            raise

    async def _release(self, connection: psycopg.AsyncConnection[TupleRow] | None) -> None:
        async with self._freed:
            if connection is None:
                self._opened -= 1
            else:
                self._idle.append(connection)
            self._freed.notify()

    async def fetchone(self, sql: str, params: dict[str, Any]) -> TupleRow | None:
        """The first row of a read (None when it returns none)."""
        return await self._read(sql, params, all_rows=False)

    async def fetchall(self, sql: str, params: dict[str, Any]) -> list[TupleRow]:
        """Every row of a read."""
        return await self._read(sql, params, all_rows=True)

    @overload
    async def _read(self, sql: str, params: dict[str, Any],
                    all_rows: Literal[False]) -> TupleRow | None: ...

    @overload
    async def _read(self, sql: str, params: dict[str, Any],
                    all_rows: Literal[True]) -> list[TupleRow]: ...

    async def _read(self, sql: str, params: dict[str, Any],
                    all_rows: bool) -> TupleRow | None | list[TupleRow]:
        import psycopg

        for attempt in range(2):
            connection = await self._acquire()
            try:
                cursor = await connection.execute(sql, params, prepare=True)
                row = await (cursor.fetchall() if all_rows else cursor.fetchone())
            except psycopg.OperationalError:
                await connection.close()
                await self._release(None)
                if attempt:
                    raise
                continue
            except BaseException:
                await connection.close()
                await self._release(None)
                raise
            await self._release(connection)
            return row
        raise AssertionError("unreachable")

    async def execute(self, sql: str, params: dict[str, Any]) -> TupleRow | None:
        """Run one writing statement (not retried: it may have committed); returns its first
        row, if it returns rows."""
        connection = await self._acquire()
        try:
            cursor = await connection.execute(sql, params, prepare=True)
            row = await cursor.fetchone() if cursor.description is not None else None
        except BaseException as error:
            import psycopg

            if isinstance(error, psycopg.OperationalError | asyncio.CancelledError):
                await connection.close()
                await self._release(None)
                raise
            await self._release(connection)
            raise
        await self._release(connection)
        return row

    @classmethod
    def for_store(cls, engine: AsyncEngine, location: StoreLocation, size: int) -> FastReads:
        """A pool on the same database and schema as ``engine``."""
        return cls(engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
                   f"-csearch_path={location.schema}", size)

    async def close(self) -> None:
        async with self._freed:
            idle, self._idle = self._idle, []
            self._opened -= len(idle)
        for connection in idle:
            await connection.close()
