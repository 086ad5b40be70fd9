"""The SQLite task store: deliveries seen and tasks with their whole life, in one file.

Every public method is one short transaction on its own connection, so the store is safe to
share between the web server's threads, the runner's threads and other processes on the same
file. Writes use `BEGIN IMMEDIATE`, so writers take turns: that makes "take the oldest
acknowledged task" atomic, and the checks intake makes before recording a task.

The types and the queries it shares with the PostgreSQL store are in `app.records`; they are
imported from here too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.records import (CANCELLED, COMPLETED, FAILED, FINISHED, PENDING, PULL_REQUEST_TRIGGERS,
                         REJECTED, REMOVED, RUNNING, Duplicate, InstallationChange, NewTask,
                         Superseded, Task, TaskRecords, installation_refusal, utcnow)

# The rest of the code base imports the records' types from here.
__all__ = ["CANCELLED", "COMPLETED", "FAILED", "FINISHED", "PENDING", "PULL_REQUEST_TRIGGERS",
           "REJECTED", "REMOVED", "RUNNING", "SCHEMA_VERSION", "Duplicate", "InstallationChange",
           "NewTask", "Store", "Superseded", "Task", "installation_refusal", "utcnow"]

SCHEMA_VERSION = 9
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    guid        TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    action      TEXT,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id                TEXT PRIMARY KEY,
    delivery_guid     TEXT NOT NULL REFERENCES deliveries(guid),
    status            TEXT NOT NULL,
    trigger           TEXT NOT NULL,
    repo              TEXT NOT NULL,
    installation_id   INTEGER NOT NULL,
    number            INTEGER NOT NULL,
    comment_id        INTEGER,
    instruction       TEXT NOT NULL,
    issue_title       TEXT NOT NULL DEFAULT '',
    issue_body        TEXT NOT NULL DEFAULT '',
    issue_author      TEXT NOT NULL DEFAULT '',
    requested_by      TEXT NOT NULL,
    requested_by_id   INTEGER,
    created_at        TEXT NOT NULL,
    acknowledged_at   TEXT,
    started_at        TEXT,
    finished_at       TEXT,
    status_comment_id INTEGER,
    branch            TEXT,
    output            TEXT,
    exit_code         INTEGER,
    container_id      TEXT,
    error             TEXT,
    patches           TEXT,
    chat_history      TEXT,
    commit_sha        TEXT,
    changed_files     TEXT,
    input_tokens      INTEGER,
    output_tokens     INTEGER,
    pr_url            TEXT,
    pr_number         INTEGER,
    claimed_by        TEXT,
    heartbeat_at      TEXT,
    command           TEXT,
    problem           TEXT,
    base_branch       TEXT,
    draft             INTEGER NOT NULL DEFAULT 0,
    label             TEXT,
    review_context    TEXT,
    retry_of          TEXT,
    start_sha         TEXT,
    cancel_requested_by TEXT,
    target_task       TEXT,
    check_run_id      INTEGER,
    pushed_check_run_id INTEGER,
    cache_write_tokens INTEGER,
    cache_read_tokens INTEGER,
    cost_usd          REAL,
    stop_reason       TEXT,
    model             TEXT,
    agent             TEXT,
    agent_version     TEXT,
    attempt           INTEGER NOT NULL DEFAULT 0,
    job_id            INTEGER,
    handed_back       INTEGER NOT NULL DEFAULT 0,
    agents            TEXT,
    group_of          TEXT,
    turns             INTEGER,
    test_result       TEXT,
    test_output       TEXT,
    compared_at       TEXT,
    compared_attempt  INTEGER,
    comparison_comment_id INTEGER,
    picked_pr         INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, created_at);
-- One task per comment: a replayed delivery under a new GUID cannot start the work again.
CREATE UNIQUE INDEX IF NOT EXISTS one_task_per_comment ON tasks (repo, trigger, comment_id)
    WHERE comment_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_issue ON tasks (repo, number, status);
-- What GitHub said about the App's installations, in the order it arrived.
CREATE TABLE IF NOT EXISTS installation_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_guid   TEXT NOT NULL REFERENCES deliveries(guid),
    installation_id INTEGER NOT NULL,
    repo            TEXT,  -- NULL: the whole installation
    action          TEXT NOT NULL,
    received_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS installation_events_by_id ON installation_events (installation_id, repo);
-- Each button of a task works once, whichever of its check runs shows it: a redelivered or
-- replayed press starts nothing. A refused press is taken back, so it uses up nothing.
CREATE TABLE IF NOT EXISTS pressed_buttons (
    task_id       TEXT NOT NULL,
    action        TEXT NOT NULL,
    check_run_id  INTEGER NOT NULL,
    command_task  TEXT NOT NULL,
    PRIMARY KEY (task_id, action)
);
"""

# Columns added since schema 1, with their declarations: an older store gains the ones it lacks.
_ADDED_COLUMNS = {
    "issue_author": "TEXT NOT NULL DEFAULT ''",
    "command": "TEXT", "problem": "TEXT", "base_branch": "TEXT",
    "draft": "INTEGER NOT NULL DEFAULT 0", "label": "TEXT", "review_context": "TEXT",
    "retry_of": "TEXT", "start_sha": "TEXT", "cancel_requested_by": "TEXT",
    "target_task": "TEXT", "check_run_id": "INTEGER", "pushed_check_run_id": "INTEGER",
    "cache_write_tokens": "INTEGER", "cache_read_tokens": "INTEGER", "cost_usd": "REAL",
    "stop_reason": "TEXT", "model": "TEXT", "agent": "TEXT", "agent_version": "TEXT",
    "attempt": "INTEGER NOT NULL DEFAULT 0", "job_id": "INTEGER",
    "handed_back": "INTEGER NOT NULL DEFAULT 0",
    "agents": "TEXT", "group_of": "TEXT", "turns": "INTEGER", "test_result": "TEXT",
    "test_output": "TEXT",
    "compared_at": "TEXT", "compared_attempt": "INTEGER", "comparison_comment_id": "INTEGER",
    "picked_pr": "INTEGER",
}


class Store(TaskRecords):
    def __init__(self, path: Path):
        self.path = Path(path)

    def initialise(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            # WAL lets the web server read and record while a runner thread writes.
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer async-code (schema "
                                   f"{version}, this one knows {SCHEMA_VERSION}); upgrade it")
            db.executescript(_SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
            for column, declaration in _ADDED_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {declaration}")
            # After the columns: an older store gains group_of just above.
            db.execute("CREATE INDEX IF NOT EXISTS tasks_by_group ON tasks (group_of) "
                       "WHERE group_of IS NOT NULL")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            db.close()

    @contextmanager
    def _connect(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # Handing out work (the PostgreSQL store leaves this to its job queue)

    def claim_for_acknowledgement(self, claimed_by: str) -> Task | None:
        """Atomically take the oldest new task nobody is acknowledging, so it is answered once
        even when several processes share the store."""
        with self._connect(immediate=True) as db:
            row = db.execute("SELECT id FROM tasks WHERE status = ? AND acknowledged_at IS NULL "
                             "AND claimed_by IS NULL ORDER BY created_at, rowid LIMIT 1",
                             (PENDING,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE tasks SET claimed_by = ?, heartbeat_at = ? WHERE id = ?",
                       (claimed_by, utcnow(), row["id"]))
            return self._row_to_task(db.execute("SELECT * FROM tasks WHERE id = ?", (row["id"],)).fetchone())

    def claim_next(self, claimed_by: str) -> Task | None:
        """Atomically move the oldest acknowledged pending task to running and return it.

        One task at a time per issue or pull request: a task waits while another on the same
        one runs. A task someone cancelled is never claimed, nor is a side-by-side run's member:
        its request's task runs it, and counts for the whole group.
        """
        with self._connect(immediate=True) as db:
            row = db.execute(
                "SELECT id FROM tasks AS t WHERE status = ? AND acknowledged_at IS NOT NULL "
                "AND command IS NULL AND cancel_requested_by IS NULL AND group_of IS NULL "
                "AND NOT EXISTS ("
                "  SELECT 1 FROM tasks AS r WHERE r.repo = t.repo AND r.number = t.number "
                "  AND r.status = ? AND r.group_of IS NULL) "
                "ORDER BY created_at, rowid LIMIT 1", (PENDING, RUNNING)).fetchone()
            if row is None:
                return None
            now = utcnow()
            # A fresh heartbeat with the claim: the previous holder's must not make it look dead.
            db.execute("UPDATE tasks SET status = ?, started_at = ?, claimed_by = ?, heartbeat_at = ?, "
                       "attempt = attempt + 1 WHERE id = ?", (RUNNING, now, claimed_by, now, row["id"]))
            return self._row_to_task(db.execute("SELECT * FROM tasks WHERE id = ?", (row["id"],)).fetchone())

    def heartbeat(self, claimed_by: str) -> None:
        """Mark every task this process holds as still cared for."""
        with self._connect(immediate=True) as db:
            db.execute("UPDATE tasks SET heartbeat_at = ? WHERE claimed_by = ? AND status IN (?, ?)",
                       (utcnow(), claimed_by, PENDING, RUNNING))
