"""The PostgreSQL task store: what the SQLite store keeps, in a database many hosts share.

It answers every question `app.store.Store` answers, with the same `Task` objects (times as
the same ISO strings, JSON columns decoded), from the tables `async-code migrate` makes in
schema `async_code`. Handing out work (claims, heartbeats, re-attempts) is not here: on
PostgreSQL that is the job queue's (procrastinate, runner/queue.py). The store only puts each
job in, by the queue's own SQL function, in the transaction that makes it due: a recorded task
always has the job that acknowledges it, an acknowledged one the job that runs it, and a
rolled-back one neither. So a receiver records work without loading the queue's worker.

Connections come from a pool; each sets its search_path to `async_code` when it is made, so a
connection through Supabase's pooler in session mode works too.
"""

from __future__ import annotations

import json
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
from app.records import PENDING, RUNNING, Row, Task, TaskRecords

# The queue's jobs: what runner/queue.py registers under these names.
ACKNOWLEDGE_JOB, ACKNOWLEDGE_QUEUE = "acknowledge", "acknowledge"
RUN_JOB, RUN_QUEUE = "run", "tasks"
_DEFER_JOB = ("SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(?, ?, ?, ?, NULL, CAST(? AS jsonb), "
              "NULL)::procrastinate_job_to_defer_v1]))[1] AS id")
# A re-attempt's job goes ahead of the tasks that were asked after it on the same issue.
_REATTEMPT_PRIORITY = 1


def issue_lock(repo: str, number: int) -> str:
    """The run job's lock: one task at a time per issue or pull request, across every worker."""
    return f"{repo}#{number}"

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

    @property
    def conninfo(self) -> str:
        """The database's URL, for the job queue's own connections."""
        return self._conninfo

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

    # The job queue

    @staticmethod
    def _defer(db: _Transaction, job: str, queue: str, task_id: str, lock: str | None = None,
               priority: int = 0) -> int:
        return db.execute(_DEFER_JOB, (queue, job, priority, lock,
                                       json.dumps({"task_id": task_id}))).fetchone()["id"]

    def _task_recorded(self, db: _Transaction, task_id: str, repo: str, number: int) -> None:
        # Acknowledged one at a time per issue, in the order recorded: the run jobs then queue
        # up in that order behind the issue's lock, whichever worker acknowledges them.
        self._defer(db, ACKNOWLEDGE_JOB, ACKNOWLEDGE_QUEUE, task_id,
                    ACKNOWLEDGE_QUEUE + ":" + issue_lock(repo, number))

    def _queued(self, db: _Transaction, task_id: str) -> None:
        row = db.execute("SELECT repo, number, status, command FROM tasks WHERE id = ?",
                         (task_id,)).fetchone()
        # A task cancelled while it was being acknowledged gets no job; a command never runs.
        if row is None or row["status"] != PENDING or row["command"] is not None:
            return
        job_id = self._defer(db, RUN_JOB, RUN_QUEUE, task_id, issue_lock(row["repo"], row["number"]))
        db.execute("UPDATE tasks SET job_id = ? WHERE id = ?", (job_id, task_id))

    def _reattempted(self, db: _Transaction, task_id: str, stalled_job: int | None) -> None:
        # The stalled job ends here, failed, and the next attempt runs as a new job: the gone
        # worker, should it only have been slow, then ends a job nobody runs any more (the
        # queue refuses to finish a job twice), never the one its successor runs.
        if stalled_job is None:
            return
        db.execute("SELECT procrastinate_finish_job_v1(?, 'failed', false)", (stalled_job,))
        row = db.execute("SELECT repo, number FROM tasks WHERE id = ?", (task_id,)).fetchone()
        job_id = self._defer(db, RUN_JOB, RUN_QUEUE, task_id, issue_lock(row["repo"], row["number"]),
                             priority=_REATTEMPT_PRIORITY)
        db.execute("UPDATE tasks SET job_id = ? WHERE id = ?", (job_id, task_id))

    def _jobs_cancelled(self, db: _Transaction, waiting: list[Row], running: list[Row]) -> None:
        # A waiting job is cancelled; a running one is asked to abort: its worker hears it at
        # once (LISTEN/NOTIFY) and `should_abort()` stops the sandbox.
        for rows, abort in ((waiting, False), (running, True)):
            for row in rows:
                if row["job_id"] is not None:
                    db.execute("SELECT procrastinate_cancel_job_v1(?, ?, false)", (row["job_id"], abort))

    def start_attempt(self, task_id: str, claimed_by: str) -> Task | None:
        """The task, now running as one more attempt by `claimed_by` (host:pid); None when it
        was cancelled or has ended, so there is nothing to run. The queue runs a job on one
        worker at a time, so this needs no claim of its own."""
        with self._connect() as db:
            row = db.execute("UPDATE tasks SET status = ?, started_at = COALESCE(started_at, now()), "
                             "claimed_by = ?, attempt = attempt + 1 WHERE id = ? AND status IN (?, ?) "
                             "AND cancel_requested_by IS NULL RETURNING *",
                             (RUNNING, claimed_by, task_id, PENDING, RUNNING)).fetchone()
        return self._row_to_task(row) if row else None
