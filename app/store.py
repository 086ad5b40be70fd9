"""The task store: deliveries seen and tasks with their whole life, in SQLite.

Every public method is one short transaction on its own connection, so the store is safe to
share between the web server's threads, the runner's threads and other processes on the same
file. Claims use `BEGIN IMMEDIATE`, which makes "take the oldest acknowledged task" atomic.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.buttons import ButtonPress

PENDING, RUNNING, COMPLETED, FAILED, REJECTED = "pending", "running", "completed", "failed", "rejected"
CANCELLED = "cancelled"
FINISHED = (COMPLETED, FAILED, REJECTED, CANCELLED)

SCHEMA_VERSION = 6
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
    agent_version     TEXT
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
}

# Columns holding JSON documents; they are decoded when read.
_JSON_COLUMNS = {"patches", "chat_history", "changed_files", "review_context"}
_BOOLEAN_COLUMNS = {"draft"}


class Duplicate(enum.Enum):
    DELIVERY = "delivery seen before"
    COMMENT = "comment already has a task"
    LABEL = "the label already has a task waiting or running"
    BUTTON = "the task's button was pressed before"


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class NewTask:
    """What intake knows about a task when the delivery arrives."""

    trigger: str
    repo: str
    installation_id: int
    number: int
    comment_id: int | None
    instruction: str
    requested_by: str
    requested_by_id: int | None
    issue_title: str = ""
    issue_body: str = ""
    issue_author: str = ""  # who opened the issue: maybe not someone who may write
    command: str | None = None  # cancel, retry, status or help; None for work
    problem: str | None = None  # why the request could not be read: answered, never run
    base_branch: str | None = None  # --base BRANCH on an issue
    draft: bool = False  # --draft
    model: str | None = None  # --model NAME; None: the repository's or the service's model
    # --agent NAME; None: the repository's or the service's agent. Once the task runs, the
    # agent it runs with, which a retry or a continue then keeps.
    agent: str | None = None
    label: str | None = None  # the label that asked, removed when the task ends
    review_context: Any = None  # for a review comment: its file, lines and diff hunk
    retry_of: str | None = None  # the task a `retry` repeats
    target_task: str | None = None  # the task a check run's button acts on


@dataclass(frozen=True)
class InstallationChange:
    """An `installation` or `installation_repositories` event: what it changed, for whom."""

    installation_id: int
    action: str  # created, deleted, suspend, unsuspend, added, removed, ...
    repos: tuple[str, ...] = ()  # empty: the whole installation


# Keyword-only: a Task is what intake knew (NewTask) plus everything learnt since, and is only
# ever built from named columns.
@dataclass(frozen=True, kw_only=True)
class Task(NewTask):
    id: str
    delivery_guid: str
    status: str
    created_at: str
    acknowledged_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    status_comment_id: int | None = None
    branch: str | None = None
    output: str | None = None
    exit_code: int | None = None
    container_id: str | None = None
    error: str | None = None
    patches: Any = None
    chat_history: Any = None
    commit_sha: str | None = None
    changed_files: Any = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    pr_url: str | None = None
    pr_number: int | None = None
    claimed_by: str | None = None
    heartbeat_at: str | None = None
    start_sha: str | None = None
    cancel_requested_by: str | None = None
    check_run_id: int | None = None  # the task's check run on the head it started from
    pushed_check_run_id: int | None = None  # the check run on the commit it pushed
    cache_write_tokens: int | None = None  # written to the prompt cache
    cache_read_tokens: int | None = None  # read from the prompt cache
    cost_usd: float | None = None  # what the model calls cost; None when the model has no price
    stop_reason: str | None = None  # why the agent stopped: answer, max_turns or budget
    agent_version: str | None = None  # the version of the agent the task ran with

    @property
    def on_pull_request(self) -> bool:
        return self.trigger in PULL_REQUEST_TRIGGERS

    def summary(self) -> dict[str, Any]:
        """The task as `async-code tasks --json` prints it (no transcript, no diff)."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)
                 if f.name not in ("patches", "chat_history", "issue_body")}
        return {"id": self.id, "status": self.status, **shown}  # what a reader looks for first


_TASK_COLUMNS = [f.name for f in fields(Task)]
# Triggers whose task works on a pull request's branch; the others open a pull request.
# "continue" is a check run's Continue button: more work on the head a task pushed.
PULL_REQUEST_TRIGGERS = frozenset({"pr_comment", "pr_label", "review_comment", "continue"})


REMOVED = " was removed from the App's installation"


def installation_refusal(events: list[tuple[str | None, str]], repo: str) -> str | None:
    """Why work on `repo` is refused after these installation events, oldest first; each is
    (repo, action) with repo None for the whole installation. None: nothing refuses it."""
    installation = repository = None
    for event_repo, action in events:
        if event_repo is None and action in ("created", "deleted", "suspend", "unsuspend"):
            installation = action
        elif event_repo is not None and action in ("added", "removed"):
            repository = action
    if installation == "deleted":
        return "the App was uninstalled"
    if installation == "suspend":
        return "the App's installation is suspended"
    if repository == "removed":
        return repo + REMOVED
    return None


class Store:
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
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            db.close()

    def instance_id(self) -> str:
        """This store's own id, made on first use: it labels the store's sandbox containers,
        so two installations sharing a Docker engine never remove each other's."""
        with self._connect(immediate=True) as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)",
                       (uuid.uuid4().hex[:16],))
            return db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()["value"]

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

    # Intake

    def record_delivery(self, guid: str, event: str, action: str | None,
                        task: NewTask | None = None,
                        installation: InstallationChange | None = None,
                        button: ButtonPress | None = None) -> Task | Duplicate | None:
        """Record a delivery and what it asks for in one transaction.

        Returns the new Task; a Duplicate when the GUID was seen before or the comment (or the
        label) already has a task, and nothing new is recorded for it; None when the delivery
        asks for no task. An installation change is recorded with the delivery; one that takes
        work away finishes the tasks still waiting on it.
        """
        with self._connect(immediate=True) as db:
            seen = db.execute("SELECT 1 FROM deliveries WHERE guid = ?", (guid,)).fetchone()
            if seen:
                return Duplicate.DELIVERY
            now = utcnow()
            db.execute("INSERT INTO deliveries (guid, event, action, received_at) VALUES (?, ?, ?, ?)",
                       (guid, event, action, now))
            if installation is not None:
                self._record_installation_change(db, guid, installation, now)
            if button is not None:
                return self._record_button_press(db, guid, button)
            if task is None:
                return None
            if task.comment_id is not None and db.execute(
                    "SELECT 1 FROM tasks WHERE repo = ? AND trigger = ? AND comment_id = ?",
                    (task.repo, task.trigger, task.comment_id)).fetchone():
                return Duplicate.COMMENT
            # A labeled event replayed under a new GUID must not queue the same work twice.
            if task.label is not None and db.execute(
                    "SELECT 1 FROM tasks WHERE repo = ? AND number = ? AND label IS NOT NULL "
                    "AND status IN (?, ?)", (task.repo, task.number, PENDING, RUNNING)).fetchone():
                return Duplicate.LABEL
            return self._insert_task(db, guid, task)

    def _insert_task(self, db: sqlite3.Connection, guid: str, task: NewTask,
                     task_id: str | None = None) -> Task:
        row = {"id": task_id or uuid.uuid4().hex, "delivery_guid": guid, "status": PENDING,
               "created_at": utcnow(), **{f.name: getattr(task, f.name) for f in fields(task)}}
        stored = {k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v
                  for k, v in row.items()}
        db.execute(f"INSERT INTO tasks ({', '.join(stored)}) VALUES ({', '.join('?' * len(stored))})",
                   list(stored.values()))
        return Task(**row)

    def _record_button_press(self, db: sqlite3.Connection, guid: str,
                             press: ButtonPress) -> Task | Duplicate | None:
        """A command task for the press, acting on the check run's task; None when the check run
        is not one of that task's (or the task is not one of this store's on that repository)."""
        target = db.execute("SELECT number, installation_id, check_run_id, pushed_check_run_id "
                            "FROM tasks WHERE id = ? AND repo = ? AND command IS NULL",
                            (press.task_id, press.repo)).fetchone()
        if (target is None or target["installation_id"] != press.installation_id
                or press.check_run_id not in (target["check_run_id"], target["pushed_check_run_id"])):
            return None
        command = NewTask(
            trigger="check_run", repo=press.repo, installation_id=press.installation_id,
            number=target["number"], comment_id=None, instruction="", command=press.action,
            requested_by=press.requested_by, requested_by_id=press.requested_by_id,
            target_task=press.task_id)
        row_id = uuid.uuid4().hex
        pressed = db.execute("INSERT OR IGNORE INTO pressed_buttons (task_id, action, check_run_id, "
                             "command_task) VALUES (?, ?, ?, ?)",
                             (press.task_id, press.action, press.check_run_id, row_id))
        if pressed.rowcount == 0:
            return Duplicate.BUTTON
        return self._insert_task(db, guid, command, task_id=row_id)

    def release_button(self, command_task_id: str) -> None:
        """Take back a press that was refused, so the button still works for a writer."""
        with self._connect(immediate=True) as db:
            db.execute("DELETE FROM pressed_buttons WHERE command_task = ?", (command_task_id,))

    def _record_installation_change(self, db: sqlite3.Connection, guid: str,
                                    change: InstallationChange, now: str) -> None:
        db.executemany("INSERT INTO installation_events (delivery_guid, installation_id, repo, "
                       "action, received_at) VALUES (?, ?, ?, ?, ?)",
                       [(guid, change.installation_id, repo, change.action, now)
                        for repo in change.repos or (None,)])
        # Queued work can no longer be done, nor answered on GitHub: say so here. One statement
        # whatever the number of repositories: an installation can list a hundred thousand.
        if change.repos and change.action == "removed":
            db.execute("UPDATE tasks SET status = ?, finished_at = ?, error = repo || ? "
                       "WHERE status = ? AND installation_id = ? "
                       "AND repo IN (SELECT value FROM json_each(?))",
                       (FAILED, now, REMOVED, PENDING, change.installation_id,
                        json.dumps(list(change.repos))))
        elif not change.repos and (reason := installation_refusal([(None, change.action)], "")):
            db.execute("UPDATE tasks SET status = ?, finished_at = ?, error = ? WHERE status = ? "
                       "AND installation_id = ?", (FAILED, now, reason, PENDING, change.installation_id))

    def installation_refusal(self, installation_id: int, repo: str) -> str | None:
        """Why the App may no longer work on `repo`, from the installation events recorded;
        None when nothing recorded says so (installations older than this store sent none)."""
        with self._connect() as db:
            rows = db.execute("SELECT repo, action FROM installation_events WHERE installation_id = ? "
                              "AND (repo IS NULL OR repo = ?) ORDER BY id",
                              (installation_id, repo)).fetchall()
        return installation_refusal([(row["repo"], row["action"]) for row in rows], repo)

    # Runner

    def unacknowledged(self) -> list[Task]:
        return self._select("status = ? AND acknowledged_at IS NULL ORDER BY created_at, rowid", PENDING)

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

    def waiting_ahead_of(self, task_id: str) -> int:
        """Acknowledged tasks still waiting for a slot that were recorded before this one."""
        with self._connect() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM tasks WHERE status = ? AND acknowledged_at IS NOT NULL "
                "AND rowid < (SELECT rowid FROM tasks WHERE id = ?)", (PENDING, task_id)).fetchone()
        return int(row[0])

    def queued_for_repo(self, repo: str) -> int:
        with self._connect() as db:
            row = db.execute("SELECT COUNT(*) FROM tasks WHERE repo = ? AND status = ? "
                             "AND acknowledged_at IS NOT NULL", (repo, PENDING)).fetchone()
        return int(row[0])

    def claim_next(self, claimed_by: str) -> Task | None:
        """Atomically move the oldest acknowledged pending task to running and return it.

        One task at a time per issue or pull request: a task waits while another on the same
        one runs. A task someone cancelled is never claimed.
        """
        with self._connect(immediate=True) as db:
            row = db.execute(
                "SELECT id FROM tasks AS t WHERE status = ? AND acknowledged_at IS NOT NULL "
                "AND command IS NULL AND cancel_requested_by IS NULL AND NOT EXISTS ("
                "  SELECT 1 FROM tasks AS r WHERE r.repo = t.repo AND r.number = t.number "
                "  AND r.status = ?) "
                "ORDER BY created_at, rowid LIMIT 1", (PENDING, RUNNING)).fetchone()
            if row is None:
                return None
            now = utcnow()
            # A fresh heartbeat with the claim: the previous holder's must not make it look dead.
            db.execute("UPDATE tasks SET status = ?, started_at = ?, claimed_by = ?, heartbeat_at = ? "
                       "WHERE id = ?", (RUNNING, now, claimed_by, now, row["id"]))
            return self._row_to_task(db.execute("SELECT * FROM tasks WHERE id = ?", (row["id"],)).fetchone())

    # Control commands

    def work_on(self, repo: str, number: int) -> list[Task]:
        """The work tasks (not commands) on one issue or pull request, oldest first."""
        return self._select("repo = ? AND number = ? AND command IS NULL ORDER BY created_at, rowid",
                            repo, number)

    def ahead_on_same(self, task_id: str) -> list[Task]:
        """Unfinished work tasks on the same issue or pull request recorded before this one."""
        return self._select(
            "command IS NULL AND status IN (?, ?) AND rowid < (SELECT rowid FROM tasks WHERE id = ?) "
            "AND (repo, number) = (SELECT repo, number FROM tasks WHERE id = ?) "
            "ORDER BY created_at, rowid", PENDING, RUNNING, task_id, task_id)

    def request_cancel(self, repo: str, number: int, by: str,
                       task_id: str | None = None) -> tuple[list[Task], list[Task]]:
        """Cancel the unfinished work on one issue or pull request (only `task_id` when given),
        in one transaction.

        Returns (tasks cancelled while waiting, running tasks now asked to stop). A running
        task stops when the process holding it sees the request (`cancel_requested`).
        """
        with self._connect(immediate=True) as db:
            rows = db.execute("SELECT * FROM tasks WHERE repo = ? AND number = ? AND command IS NULL "
                              "AND status IN (?, ?) AND cancel_requested_by IS NULL "
                              "AND (? IS NULL OR id = ?) ORDER BY created_at, rowid",
                              (repo, number, PENDING, RUNNING, task_id, task_id)).fetchall()
            now, waiting, running = utcnow(), [], []
            for row in rows:
                if row["status"] == PENDING:
                    db.execute("UPDATE tasks SET status = ?, finished_at = ?, cancel_requested_by = ?, "
                               "error = ? WHERE id = ?", (CANCELLED, now, by, f"cancelled by @{by}",
                                                          row["id"]))
                    waiting.append(row["id"])
                else:
                    db.execute("UPDATE tasks SET cancel_requested_by = ? WHERE id = ?", (by, row["id"]))
                    running.append(row["id"])
            found = {r["id"]: self._row_to_task(r) for r in db.execute(
                f"SELECT * FROM tasks WHERE id IN ({', '.join('?' * len(rows))})",
                [row["id"] for row in rows]).fetchall()} if rows else {}
        return [found[i] for i in waiting], [found[i] for i in running]

    def cancel_requested(self, task_id: str) -> str | None:
        """Who asked to cancel this task, or None."""
        with self._connect() as db:
            row = db.execute("SELECT cancel_requested_by FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return row["cancel_requested_by"] if row else None

    def record_retry(self, original: Task, *, guid: str, requested_by: str,
                     requested_by_id: int | None) -> Task:
        """A new task asking again what `original` asked, on behalf of whoever said `retry`."""
        fields_of_request = {f.name: getattr(original, f.name) for f in fields(NewTask)}
        # No label: it came off when the original ended, and a retry is asked by a command.
        retry = NewTask(**{**fields_of_request, "comment_id": None, "command": None, "problem": None,
                           "label": None, "requested_by": requested_by,
                           "requested_by_id": requested_by_id, "retry_of": original.id})
        with self._connect(immediate=True) as db:
            return self._insert_task(db, guid, retry)

    def record_continue(self, previous: Task, *, guid: str, requested_by: str,
                        requested_by_id: int | None) -> Task:
        """A new task on the pull request `previous` pushed to, carrying on its work."""
        carry_on = NewTask(trigger="continue", repo=previous.repo,
                           installation_id=previous.installation_id, number=previous.pr_number,
                           comment_id=None, instruction=previous.instruction,
                           model=previous.model, agent=previous.agent, requested_by=requested_by,
                           requested_by_id=requested_by_id, retry_of=previous.id)
        with self._connect(immediate=True) as db:
            return self._insert_task(db, guid, carry_on)

    def pushed_work_on(self, repo: str, number: int) -> list[Task]:
        """Accepted tasks that pushed to a pull request, asked on issue or pull request `number`
        or pushing to pull request `number`, oldest first."""
        return self._select("repo = ? AND (number = ? OR pr_number = ?) AND status_comment_id IS NOT "
                            "NULL AND commit_sha IS NOT NULL AND pr_number IS NOT NULL "
                            "ORDER BY created_at, rowid", repo, number, number)

    def heartbeat(self, claimed_by: str) -> None:
        """Mark every task this process holds as still cared for."""
        with self._connect(immediate=True) as db:
            db.execute("UPDATE tasks SET heartbeat_at = ? WHERE claimed_by = ? AND status IN (?, ?)",
                       (utcnow(), claimed_by, PENDING, RUNNING))

    def unfinished_ids(self) -> set[str]:
        with self._connect() as db:
            rows = db.execute("SELECT id FROM tasks WHERE status IN (?, ?)", (PENDING, RUNNING)).fetchall()
        return {row["id"] for row in rows}

    def running(self) -> list[Task]:
        return self._select("status = ? ORDER BY created_at, rowid", RUNNING)

    def update(self, task_id: str, **values: Any) -> None:
        unknown = set(values) - set(_TASK_COLUMNS)
        if unknown:
            raise ValueError(f"unknown task fields: {sorted(unknown)}")
        encoded = {k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v
                   for k, v in values.items()}
        with self._connect(immediate=True) as db:
            db.execute(f"UPDATE tasks SET {', '.join(f'{k} = ?' for k in encoded)} WHERE id = ?",
                       [*encoded.values(), task_id])

    def finish(self, task_id: str, status: str, **values: Any) -> None:
        self.update(task_id, status=status, finished_at=utcnow(), **values)

    # Reading

    def get(self, task_id: str) -> Task | None:
        found = self._select("id = ?", task_id)
        return found[0] if found else None

    def list(self, limit: int | None = None) -> list[Task]:
        query = "1 ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            return self._select(query + " LIMIT ?", limit)
        return self._select(query)

    def delivery_count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])

    def _select(self, where: str, *params: Any) -> list[Task]:
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM tasks WHERE {where}", params).fetchall()
        return [self._row_to_task(row) for row in rows]

    @staticmethod
    def _row_to_task(row: sqlite3.Row) -> Task:
        values = {k: row[k] for k in _TASK_COLUMNS}
        for column in _JSON_COLUMNS:
            if values[column] is not None:
                values[column] = json.loads(values[column])
        for column in _BOOLEAN_COLUMNS:
            values[column] = bool(values[column])
        return Task(**values)

