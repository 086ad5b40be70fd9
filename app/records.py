"""What the task stores keep, and the queries they share.

A task store is SQLite (`app.store.Store`, the zero-setup default) or PostgreSQL
(`app.postgres_store.PostgresStore`, for receivers and workers on many hosts). Both answer
the same questions with the same `Task` objects: `TaskRecords` holds every query they have in
common, written once in the SQL both speak, and each store supplies its connections and the
few phrases that differ.
"""

from __future__ import annotations

import enum
import json
import secrets
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.buttons import ButtonPress

PENDING, RUNNING, COMPLETED, FAILED, REJECTED = "pending", "running", "completed", "failed", "rejected"
CANCELLED = "cancelled"
FINISHED = (COMPLETED, FAILED, REJECTED, CANCELLED)

# Columns holding JSON documents; they are decoded when read.
JSON_COLUMNS = {"patches", "chat_history", "changed_files", "review_context", "agents"}
BOOLEAN_COLUMNS = {"draft"}


class Duplicate(enum.Enum):
    DELIVERY = "delivery seen before"
    COMMENT = "comment already has a task"
    LABEL = "the label already has a task waiting or running"
    BUTTON = "the task's button was pressed before"


class Superseded(Exception):
    """A write for an attempt of a task that is no longer its current one: the task was handed
    to a newer attempt (or given back to wait for one, or ended), so the writer, however alive,
    must stop. Every write the runner makes for a running task names its attempt."""

    def __init__(self, task_id: str, attempt: int):
        super().__init__(f"attempt {attempt} of task {task_id} was superseded")
        self.task_id, self.attempt = task_id, attempt


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


NUL_SHOWN_AS = "\ufffd"


def storable(value: Any) -> Any:
    """`value` with every NUL character in its text replaced by U+FFFD.

    PostgreSQL refuses NUL in text and in jsonb, and a comment, a payload or an agent's output
    may hold one; both stores keep the same replacement, so they answer alike."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_SHOWN_AS) if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, tuple):
        return tuple(storable(item) for item in value)
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: storable(getattr(value, f.name)) for f in fields(value)
                                 if f.init})
    return value


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
    # --agents a,b: the agents to run side by side, one member task each (a list of names)
    agents: Any = None
    picked_pr: int | None = None  # `pick N`: the pull request picked


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
    attempt: int = 0  # how many times a worker started it; 0 until the first
    job_id: int | None = None  # on PostgreSQL, the queue's job that runs it
    handed_back: int = 0  # of its starts, those a worker shutting down handed back
    # A member of a side-by-side run: the task of the request it belongs to. A member is run
    # by its request's task, never claimed on its own (runner/side_by_side.py).
    group_of: str | None = None
    turns: int | None = None  # the model turns the agent took
    test_result: str | None = None  # a member's: how the `test` commands went on its branch
    test_output: str | None = None  # the end of what its failing (or timed-out) test printed
    compared_at: str | None = None  # a side-by-side request's: when its comparison was posted
    compared_attempt: int | None = None  # which of its attempts posted it
    comparison_comment_id: int | None = None

    @property
    def counted_attempts(self) -> int:
        """The starts that count against ASYNC_CODE_MAX_ATTEMPTS: all but those handed back,
        so a deploy or a scale-down never uses up a task's attempts."""
        return self.attempt - self.handed_back

    @property
    def on_pull_request(self) -> bool:
        return self.trigger in PULL_REQUEST_TRIGGERS

    def summary(self) -> dict[str, Any]:
        """The task as `async-code tasks --json` prints it (no transcript, no diff)."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)
                 if f.name not in ("patches", "chat_history", "issue_body")}
        return {"id": self.id, "status": self.status, **shown}  # what a reader looks for first


TASK_COLUMNS = [f.name for f in fields(Task)]
# Triggers whose task works on a pull request's branch; the others open a pull request.
# "continue" is a check run's Continue button: more work on the head a task pushed.
PULL_REQUEST_TRIGGERS = frozenset({"pr_comment", "pr_label", "review_comment", "continue"})


REMOVED = " was removed from the App's installation"
MEMBER_LEFT_UNFINISHED = "the side-by-side run it belongs to ended before it did"


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




class Row(Protocol):
    def __getitem__(self, column: str) -> Any: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...


class Transaction(Protocol):
    """One open transaction: SQL with `?` placeholders, rows read by column name."""

    def execute(self, sql: str, params: Any = ...) -> Cursor: ...

    def executemany(self, sql: str, rows: list[Any]) -> Any: ...


class TaskRecords:
    """Everything a task store does but hand out work: intake, control commands, results and
    reading. A store supplies `_connect` and the phrases below where its SQL differs."""

    # The column giving the order in which tasks were recorded (ties on created_at).
    _ORDER = "rowid"
    # A subquery of the strings in the JSON array given as its one parameter.
    _JSON_STRINGS = "SELECT value FROM json_each(?)"
    # Appended to a SELECT whose rows the transaction goes on to change.
    _FOR_UPDATE = ""

    def _connect(self, immediate: bool = False) -> AbstractContextManager[Transaction]:
        """A transaction, committed when the block ends and rolled back if it raises;
        `immediate`: it writes, so concurrent writers wait for it."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the connections the store keeps open, if it keeps any."""

    def _lock_issue(self, db: Transaction, repo: str, number: int) -> None:
        """Hold off other transactions deciding about the same issue or pull request until this
        one ends (a store whose writers already take turns needs nothing more)."""

    def instance_id(self) -> str:
        """This store's own id, made on first use: it labels the store's sandbox containers,
        so two installations sharing a Docker engine never remove each other's."""
        with self._connect(immediate=True) as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('instance', ?) ON CONFLICT DO NOTHING",
                       (uuid.uuid4().hex[:16],))
            return db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()["value"]

    def artifact_key(self) -> str:
        """The key signing links to task artifacts kept in the data directory, made on first
        use: every process on this store makes and checks the same links."""
        with self._connect(immediate=True) as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('artifact_key', ?) "
                       "ON CONFLICT DO NOTHING", (secrets.token_hex(32),))
            return db.execute("SELECT value FROM meta WHERE key = 'artifact_key'").fetchone()["value"]

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
        guid, event, action, task, installation, button = storable(
            (guid, event, action, task, installation, button))
        with self._connect(immediate=True) as db:
            now = utcnow()
            # Inserting first makes two deliveries of one GUID at once record it once.
            recorded = db.execute("INSERT INTO deliveries (guid, event, action, received_at) "
                                  "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                  (guid, event, action, now))
            if recorded.rowcount == 0:
                return Duplicate.DELIVERY
            if installation is not None:
                self._record_installation_change(db, guid, installation, now)
            if button is not None:
                return self._record_button_press(db, guid, button)
            if task is None:
                return None
            # A labeled event replayed under a new GUID must not queue the same work twice.
            if task.label is not None:
                self._lock_issue(db, task.repo, task.number)
                if db.execute("SELECT 1 FROM tasks WHERE repo = ? AND number = ? AND label IS NOT "
                              "NULL AND status IN (?, ?)",
                              (task.repo, task.number, PENDING, RUNNING)).fetchone():
                    return Duplicate.LABEL
            # One task per comment: the unique index turns a second one away.
            return self._insert_task(db, guid, task) or Duplicate.COMMENT

    def _insert_task(self, db: Transaction, guid: str, task: NewTask,
                     task_id: str | None = None, *, member_of: str | None = None) -> Task | None:
        """The new task; None when the comment it answers already has one. A side-by-side
        member (`member_of` its request) is acknowledged as it is made, and gets no job: its
        request runs it."""
        row = {"id": task_id or uuid.uuid4().hex, "delivery_guid": guid, "status": PENDING,
               "created_at": utcnow(), **{f.name: getattr(task, f.name) for f in fields(task)}}
        if member_of is not None:
            row.update(acknowledged_at=row["created_at"], group_of=member_of)
        stored = {k: json.dumps(v) if k in JSON_COLUMNS and v is not None else v
                  for k, v in row.items()}
        inserted = db.execute(f"INSERT INTO tasks ({', '.join(stored)}) VALUES "
                              f"({', '.join('?' * len(stored))}) ON CONFLICT DO NOTHING "
                              "RETURNING created_at", list(stored.values())).fetchone()
        if inserted is None:
            return None
        if member_of is None:
            self._task_recorded(db, row["id"], task.repo, task.number)
        # The store may keep its own clock for it.
        return Task(**{**row, "created_at": inserted["created_at"]})

    def _task_recorded(self, db: Transaction, task_id: str, repo: str, number: int) -> None:
        """In the transaction recording a task: what must exist with it (on PostgreSQL, the job
        that acknowledges it; the SQLite store's runner finds new tasks by reading them)."""

    def _jobs_cancelled(self, db: Transaction, waiting: list[Row], running: list[Row]) -> None:
        """In the transaction cancelling tasks (their rows as they were): stop their jobs too."""

    def _record_button_press(self, db: Transaction, guid: str,
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
        pressed = db.execute("INSERT INTO pressed_buttons (task_id, action, check_run_id, "
                             "command_task) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                             (press.task_id, press.action, press.check_run_id, row_id))
        if pressed.rowcount == 0:
            return Duplicate.BUTTON
        return self._insert_task(db, guid, command, task_id=row_id)

    def release_button(self, command_task_id: str) -> None:
        """Take back a press that was refused, so the button still works for a writer."""
        with self._connect(immediate=True) as db:
            db.execute("DELETE FROM pressed_buttons WHERE command_task = ?", (command_task_id,))

    def _record_installation_change(self, db: Transaction, guid: str,
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
                       f"AND repo IN ({self._JSON_STRINGS})",
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
        return self._select(f"status = ? AND acknowledged_at IS NULL ORDER BY created_at, {self._ORDER}",
                            PENDING)

    def waiting_ahead_of(self, task_id: str) -> int:
        """Acknowledged tasks still waiting for a slot that were recorded before this one."""
        with self._connect() as db:
            row = db.execute(
                "SELECT COUNT(*) AS n FROM tasks WHERE status = ? AND acknowledged_at IS NOT NULL "
                f"AND group_of IS NULL AND {self._ORDER} < (SELECT {self._ORDER} FROM tasks WHERE id = ?)",
                (PENDING, task_id)).fetchone()
        return int(row["n"])

    def queued_for_repo(self, repo: str) -> int:
        with self._connect() as db:
            # A side-by-side run waits as one request, whatever its number of members.
            row = db.execute("SELECT COUNT(*) AS n FROM tasks WHERE repo = ? AND status = ? "
                             "AND acknowledged_at IS NOT NULL AND group_of IS NULL",
                             (repo, PENDING)).fetchone()
        return int(row["n"])

    # Control commands

    def work_on(self, repo: str, number: int) -> list[Task]:
        """The work tasks (not commands) on one issue or pull request, oldest first."""
        return self._select(f"repo = ? AND number = ? AND command IS NULL AND group_of IS NULL "
                            f"ORDER BY created_at, {self._ORDER}", repo, number)

    def ahead_on_same(self, task_id: str) -> list[Task]:
        """Unfinished work tasks on the same issue or pull request recorded before this one."""
        return self._select(
            f"command IS NULL AND group_of IS NULL AND status IN (?, ?) AND {self._ORDER} < "
            f"(SELECT {self._ORDER} FROM tasks "
            "WHERE id = ?) AND (repo, number) = (SELECT repo, number FROM tasks WHERE id = ?) "
            f"ORDER BY created_at, {self._ORDER}", PENDING, RUNNING, task_id, task_id)

    def request_cancel(self, repo: str, number: int, by: str,
                       task_id: str | None = None) -> tuple[list[Task], list[Task]]:
        """Cancel the unfinished work on one issue or pull request (only `task_id` when given,
        with the members of a side-by-side run when it is one), in one transaction.

        Returns (tasks cancelled while waiting, running tasks now asked to stop). A running
        task stops when the process holding it sees the request (`cancel_requested`).
        """
        with self._connect(immediate=True) as db:
            rows = db.execute("SELECT * FROM tasks WHERE repo = ? AND number = ? AND command IS NULL "
                              "AND status IN (?, ?) AND cancel_requested_by IS NULL "
                              "AND (CAST(? AS TEXT) IS NULL OR id = ? OR group_of = ?) "
                              f"ORDER BY created_at, {self._ORDER}{self._FOR_UPDATE}",
                              (repo, number, PENDING, RUNNING, task_id, task_id,
                               task_id)).fetchall()
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
            self._jobs_cancelled(db, [r for r in rows if r["id"] in waiting],
                                 [r for r in rows if r["id"] in running])
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
                           model=previous.model, agent=previous.agent,
                           requested_by=requested_by,
                           requested_by_id=requested_by_id, retry_of=previous.id)
        with self._connect(immediate=True) as db:
            return self._insert_task(db, guid, carry_on)

    def pushed_work_on(self, repo: str, number: int) -> list[Task]:
        """Accepted tasks that pushed to a pull request, asked on issue or pull request `number`
        or pushing to pull request `number`, oldest first."""
        # A side-by-side member has no status comment of its own: its request's was accepted.
        return self._select("repo = ? AND (number = ? OR pr_number = ?) AND (status_comment_id IS "
                            "NOT NULL OR group_of IS NOT NULL) AND commit_sha IS NOT NULL AND "
                            f"pr_number IS NOT NULL ORDER BY created_at, {self._ORDER}",
                            repo, number, number)

    def mark_queued(self, task_id: str, *, status_comment_id: int | None,
                    check_run_id: int | None) -> bool:
        """The task was acknowledged and waits to run. The status comment's id and the
        acknowledgement land together, so whoever starts the task finds the comment to edit.
        False, and nothing written, when another acknowledger marked it first (one that was
        slow past the lease): a task is queued once."""
        with self._connect(immediate=True) as db:
            marked = db.execute("UPDATE tasks SET status_comment_id = ?, check_run_id = ?, "
                                "acknowledged_at = ? WHERE id = ? AND acknowledged_at IS NULL",
                                (status_comment_id, check_run_id, utcnow(), task_id))
            if marked.rowcount != 1:
                return False
            self._queued(db, task_id)
            return True

    def _queued(self, db: Transaction, task_id: str) -> None:
        """In the transaction marking a task acknowledged: on PostgreSQL, the job that runs it."""

    def unfinished_ids(self) -> set[str]:
        with self._connect() as db:
            rows = db.execute("SELECT id FROM tasks WHERE status IN (?, ?)", (PENDING, RUNNING)).fetchall()
        return {row["id"] for row in rows}

    def running(self) -> list[Task]:
        return self._select(f"status = ? ORDER BY created_at, {self._ORDER}", RUNNING)

    def update(self, task_id: str, *, attempt: int | None = None, **values: Any) -> None:
        """Write `values`; with `attempt`, only while that attempt of the task is running (the
        fence), else Superseded is raised and nothing is written."""
        unknown = set(values) - set(TASK_COLUMNS)
        if unknown:
            raise ValueError(f"unknown task fields: {sorted(unknown)}")
        values = storable(values)
        encoded = {k: json.dumps(v) if k in JSON_COLUMNS and v is not None else v
                   for k, v in values.items()}
        where, params = "id = ?", [task_id]
        if attempt is not None:
            where, params = "id = ? AND attempt = ? AND status = ?", [task_id, attempt, RUNNING]
        with self._connect(immediate=True) as db:
            written = db.execute(f"UPDATE tasks SET {', '.join(f'{k} = ?' for k in encoded)} "
                                 f"WHERE {where}", [*encoded.values(), *params])
            if attempt is not None and written.rowcount == 0:
                raise Superseded(task_id, attempt)
            if values.get("status") in FINISHED:
                self._end_members(db, task_id, values["status"])

    def _end_members(self, db: Transaction, task_id: str, outcome: str) -> None:
        """A side-by-side request's members never outlive it: those it did not see to the end
        (its worker died for good, or it was ended from outside) end with it, cancelled with a
        cancelled request and failed otherwise."""
        status, error = ((CANCELLED, "cancelled with its side-by-side run") if outcome == CANCELLED
                         else (FAILED, MEMBER_LEFT_UNFINISHED))
        db.execute("UPDATE tasks SET status = ?, finished_at = ?, error = ? WHERE group_of = ? "
                   "AND status IN (?, ?)", (status, utcnow(), error, task_id, PENDING, RUNNING))

    def finish(self, task_id: str, status: str, *, attempt: int | None = None,
               **values: Any) -> None:
        self.update(task_id, attempt=attempt, status=status, finished_at=utcnow(), **values)

    def require_current(self, task_id: str, attempt: int) -> None:
        """Raise Superseded unless `attempt` of the task is still the one running: asked right
        before each write to GitHub, so a worker that was only slow never writes over its
        successor."""
        with self._connect() as db:
            row = db.execute("SELECT attempt, status FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None or row["attempt"] != attempt or row["status"] != RUNNING:
            raise Superseded(task_id, attempt)

    def reattempt(self, task_id: str, attempt: int, stalled_job: int | None = None) -> bool:
        """Give a running task whose worker is gone back to wait for its next attempt; False when
        `attempt` is no longer the one running (someone decided about it already). From here on
        the writes of that attempt are refused. On PostgreSQL, `stalled_job` is the queue's job
        the gone worker held: it ends there, and the next attempt gets a job of its own."""
        with self._connect(immediate=True) as db:
            moved = db.execute("UPDATE tasks SET status = ?, claimed_by = NULL WHERE id = ? "
                               "AND attempt = ? AND status = ?", (PENDING, task_id, attempt, RUNNING))
            if moved.rowcount != 1:
                return False
            # Its members wait with it; its next attempt starts those that had not ended.
            db.execute("UPDATE tasks SET status = ?, claimed_by = NULL WHERE group_of = ? "
                       "AND status = ?", (PENDING, task_id, RUNNING))
            self._reattempted(db, task_id, stalled_job)
            return True

    def _reattempted(self, db: Transaction, task_id: str, stalled_job: int | None) -> None:
        """In the transaction giving a task back to wait: on PostgreSQL, its new job."""

    # Side-by-side runs

    def start_members(self, request: Task, agents: list[str]) -> list[Task]:
        """The member tasks of a side-by-side request, one per agent in `agents` order, made on
        its first attempt. Those that have not ended start one more attempt each (fencing off
        any left from an earlier attempt of the request); those that ended stay as they are.
        Raises Superseded unless `request.attempt` is the request's running attempt."""
        with self._connect(immediate=True) as db:
            current = db.execute(f"SELECT cancel_requested_by FROM tasks WHERE id = ? AND attempt = ? "
                                 f"AND status = ?{self._FOR_UPDATE}",
                                 (request.id, request.attempt, RUNNING)).fetchone()
            if current is None:
                raise Superseded(request.id, request.attempt)
            existing = {row["agent"]: row["id"] for row in db.execute(
                "SELECT id, agent FROM tasks WHERE group_of = ?", (request.id,)).fetchall()}
            now = utcnow()
            asked = {f.name: getattr(request, f.name) for f in fields(NewTask)}
            for agent in agents:
                if agent not in existing:
                    # A member asks what its request asked, with one agent, on a draft pull
                    # request of its own; it answers nobody's comment and carries no label.
                    member = NewTask(**{**asked, "comment_id": None, "label": None,
                                        "agents": None, "agent": agent, "draft": True,
                                        "retry_of": None})
                    self._insert_task(db, request.delivery_guid, member, member_of=request.id)
            db.execute("UPDATE tasks SET status = ?, claimed_by = ?, started_at = COALESCE(started_at, ?), "
                       "heartbeat_at = ?, attempt = attempt + 1 WHERE group_of = ? AND status IN (?, ?)",
                       (RUNNING, request.claimed_by, now, now, request.id, PENDING, RUNNING))
            if current["cancel_requested_by"] is not None:
                # Cancelled before its members started: they stop as soon as they look.
                db.execute("UPDATE tasks SET cancel_requested_by = ? WHERE group_of = ? AND status "
                           "= ? AND cancel_requested_by IS NULL",
                           (current["cancel_requested_by"], request.id, RUNNING))
            rows = {row["agent"]: self._row_to_task(row) for row in db.execute(
                "SELECT * FROM tasks WHERE group_of = ?", (request.id,)).fetchall()}
        return [rows[agent] for agent in agents]

    def members(self, request_id: str) -> list[Task]:
        """The member tasks of a side-by-side request, in the order they were made."""
        return self._select(f"group_of = ? ORDER BY created_at, {self._ORDER}", request_id)

    def side_by_side_member(self, repo: str, number: int, pr_number: int) -> Task | None:
        """The member of a side-by-side run asked on issue `number` that opened pull request
        `pr_number`, if one did."""
        found = self._select(f"repo = ? AND number = ? AND pr_number = ? AND group_of IS NOT NULL "
                             f"ORDER BY created_at DESC, {self._ORDER} DESC", repo, number, pr_number)
        return found[0] if found else None

    def mark_compared(self, request_id: str, attempt: int) -> bool:
        """The one transition that lets a side-by-side request post its comparison: True for
        the running `attempt`, once, while no comparison's comment is recorded; False for an
        attempt superseded, a second call, or once one is recorded. An attempt that marked it
        and then failed to post (or died before recording the comment) leaves it to the next
        attempt, which looks for its comment on the issue before posting one."""
        with self._connect(immediate=True) as db:
            marked = db.execute("UPDATE tasks SET compared_at = ?, compared_attempt = ? WHERE id = ? "
                                "AND attempt = ? AND status = ? AND comparison_comment_id IS NULL "
                                "AND (compared_attempt IS NULL OR compared_attempt < ?)",
                                (utcnow(), attempt, request_id, attempt, RUNNING, attempt))
            return marked.rowcount == 1

    def live_attempts(self) -> set[tuple[str, int]]:
        """(task id, attempt) of every attempt that runs or may start: a running task's own and
        the next one of each unfinished task (it may be claimed right after this is read)."""
        with self._connect() as db:
            rows = db.execute("SELECT id, attempt, status FROM tasks WHERE status IN (?, ?)",
                              (PENDING, RUNNING)).fetchall()
        live = {(row["id"], row["attempt"] + 1) for row in rows}
        return live | {(row["id"], row["attempt"]) for row in rows if row["status"] == RUNNING}

    # Reading

    def get(self, task_id: str) -> Task | None:
        found = self._select("id = ?", task_id)
        return found[0] if found else None

    def list(self, limit: int | None = None) -> list[Task]:
        query = f"TRUE ORDER BY created_at DESC, {self._ORDER} DESC"
        if limit is not None:
            return self._select(query + " LIMIT ?", limit)
        return self._select(query)

    def delivery_count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) AS n FROM deliveries").fetchone()["n"])

    def _select(self, where: str, *params: Any) -> list[Task]:
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM tasks WHERE {where}", params).fetchall()
        return [self._row_to_task(row) for row in rows]

    @staticmethod
    def _row_to_task(row: Row) -> Task:
        """A task from its row, whose JSON columns the store hands over as text."""
        values = {k: row[k] for k in TASK_COLUMNS}
        for column in JSON_COLUMNS:
            if values[column] is not None:
                values[column] = json.loads(values[column])
        for column in BOOLEAN_COLUMNS:
            values[column] = bool(values[column])
        return Task(**values)
