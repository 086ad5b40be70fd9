"""The PostgreSQL task store: what the SQLite store keeps, in a database many hosts share.

It answers every question `app.store.Store` answers, with the same `Task` objects (times as
the same ISO strings, JSON columns decoded), from the tables `async-code migrate` makes in
schema `async_code`. Handing out work (claims, heartbeats) is not here: on PostgreSQL that is
the job queue's.

Connections come from a pool; each sets its search_path to `async_code` when it is made, so a
connection through Supabase's pooler in session mode works too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timezone
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool

from app.migrate import SCHEMA, all_migrations, differences
from app.records import TaskRecords

# pg_advisory_xact_lock(int, int)'s first key for "deciding about one issue or pull request".
_ISSUE_LOCK = 1
_CONNECT_TIMEOUT = 10


class StoreUnavailable(RuntimeError):
    """The database cannot be used as a task store; the message says what to do."""


def without_password(error: Exception, conninfo: str) -> str:
    """What went wrong, for a log or a terminal: libpq quotes a URL it cannot read whole."""
    message = str(error).strip()
    try:
        password = psycopg.conninfo.conninfo_to_dict(conninfo).get("password")
    except psycopg.Error:
        return "DATABASE_URL cannot be read as a PostgreSQL URL"
    return message.replace(str(password), "***") if password else message


class _IsoTimestampLoader(TimestamptzLoader):
    """A `timestamptz` as the ISO string the SQLite store keeps (`app.records.utcnow`)."""

    def load(self, data: Any) -> str:  # type: ignore[override]
        return super().load(data).astimezone(timezone.utc).isoformat(timespec="microseconds")


def configure_connection(conn: psycopg.Connection) -> None:
    """Each new connection: the store's schema, rows by column name, times as ISO strings and
    JSON as text for `TaskRecords` to decode, as from SQLite."""
    conn.execute(f"SET search_path TO {SCHEMA}")
    conn.commit()
    conn.row_factory = dict_row
    conn.adapters.register_loader("timestamptz", _IsoTimestampLoader)
    conn.adapters.register_loader("jsonb", TextLoader)


class _Transaction:
    """A pooled connection inside one transaction, taking `TaskRecords`' SQL (`?` placeholders;
    none of it holds a literal `?` or `%`)."""

    def __init__(self, conn: psycopg.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> psycopg.Cursor:
        return self._conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: list[Any]) -> psycopg.Cursor:
        cursor = self._conn.cursor()
        cursor.executemany(sql.replace("?", "%s"), rows)
        return cursor


class PostgresStore(TaskRecords):
    _ORDER = "seq"
    _JSON_STRINGS = "SELECT jsonb_array_elements_text(CAST(? AS jsonb))"
    _FOR_UPDATE = " FOR UPDATE"

    def __init__(self, conninfo: str, *, max_connections: int = 10):
        self._conninfo = conninfo
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=max_connections, open=False,
                                    configure=configure_connection,
                                    check=ConnectionPool.check_connection,
                                    kwargs={"connect_timeout": _CONNECT_TIMEOUT},
                                    name="async-code-store")

    def initialise(self) -> None:
        """Check the database is migrated (raises StoreUnavailable) and open the pool."""
        try:
            with psycopg.connect(self._conninfo, connect_timeout=_CONNECT_TIMEOUT) as db:
                recorded = db.execute("SELECT to_regclass(%s) IS NOT NULL",
                                      (f"{SCHEMA}.schema_migrations",)).fetchone()[0]
                applied = dict(db.execute(f"SELECT name, checksum FROM {SCHEMA}.schema_migrations")
                               .fetchall()) if recorded else {}
        except psycopg.Error as error:
            raise StoreUnavailable("the database in DATABASE_URL cannot be used: "
                                   + without_password(error, self._conninfo)) from None
        wanted = all_migrations()
        problems = differences(applied, wanted)
        missing = [m.name for m in wanted if m.name not in applied]
        if missing:
            problems.append(f"the database lacks the migrations {', '.join(missing)}: run "
                            "`async-code migrate` with the same DATABASE_URL first")
        if problems:
            raise StoreUnavailable("; ".join(problems))
        self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _connect(self, immediate: bool = False) -> Iterator[_Transaction]:
        # Writers need not take turns here: intake's checks rely on unique keys, `_lock_issue`
        # and FOR UPDATE instead.
        with self._pool.connection() as conn, conn.transaction():
            yield _Transaction(conn)

    def _lock_issue(self, db: _Transaction, repo: str, number: int) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (_ISSUE_LOCK, f"{repo}#{number}"))
