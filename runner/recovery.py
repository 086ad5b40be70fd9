"""Clean-up after a crash or restart: no orphan containers or work trees, no task stuck.

A task is held by the process named in `claimed_by` (host:pid), which refreshes the task's
heartbeat while it holds it. A task is orphaned when that process is gone: on this host that
is checked directly; for another host, by a heartbeat older than STALE_AFTER. An orphaned task
is attempted again, up to ASYNC_CODE_MAX_ATTEMPTS attempts, then failed with the reason; the
next attempt reuses its status comment, check run, branch and pull request.

Every sandbox container and work tree names the store, the task and the attempt that made it;
those of an attempt no longer live are removed, whichever process on this host left them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from app.store import CANCELLED, FAILED, RUNNING, Superseded, Task
from runner import check_runs, replies, status, workspace
from runner.services import Services
from runner.github import ACKNOWLEDGE_PERMISSIONS, GitHubError
from runner.sandbox import attempts_with_containers, remove_task_containers

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 30.0
RECOVERY_INTERVAL = 30.0
STALE_AFTER = timedelta(minutes=3)


def gave_up(attempts: int, max_attempts: int) -> str:
    return (f"the workers running it stopped {attempts} time{'s' if attempts != 1 else ''}, and "
            f"ASYNC_CODE_MAX_ATTEMPTS is {max_attempts}; ask again to retry.")


def worker_identity() -> str:
    """What `claimed_by` records: enough to tell whether the claiming process still lives."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_orphaned(task: Task, *, host: str, own_pid: int, starting: bool, now: datetime,
                alive: Callable[[int], bool] = _pid_alive) -> bool:
    """Whether the process holding `task` is gone."""
    if not task.claimed_by:
        return True
    claimed_host, _, pid = task.claimed_by.rpartition(":")
    if claimed_host == host and pid.isdigit():
        if int(pid) == own_pid:
            # At start-up we hold nothing yet: a restarted container keeps its hostname and may
            # get the same pid again. Later, our own tasks are alive by definition.
            return starting
        return not alive(int(pid))
    last_sign = task.heartbeat_at or task.started_at or task.created_at
    return now - datetime.fromisoformat(last_sign) > STALE_AFTER


def recover(services: Services, *, starting: bool, tasks: bool = True) -> None:
    """Attempt orphaned running tasks again (or fail them past ASYNC_CODE_MAX_ATTEMPTS), hand
    back orphaned acknowledgements, remove leftovers.

    At start-up (before any slot of this process runs) every container and work tree that no
    live task owns is removed; later runs leave those of live tasks alone by the same rule.
    With `tasks` False only leftovers are removed: on PostgreSQL the job queue finds the tasks
    of workers that stopped (runner/queue.py).
    """
    if tasks:
        _recover_tasks(services, starting=starting)
    remove_leftovers(services)


def _recover_tasks(services: Services, *, starting: bool) -> None:
    store = services.store
    host, own_pid, now = socket.gethostname(), os.getpid(), datetime.now(timezone.utc)

    def orphaned(task: Task) -> bool:
        return is_orphaned(task, host=host, own_pid=own_pid, starting=starting, now=now)

    for task in store.unacknowledged():
        if task.claimed_by and orphaned(task):
            # Its acknowledgement was cut short; hand it back to be acknowledged.
            store.update(task.id, claimed_by=None)
    running = store.running()
    # A side-by-side run's members go with their request's task: it is attempted again, and
    # its next attempt starts the members that had not ended.
    lost = [task for task in running if orphaned(task) and task.group_of is None]
    for task in lost:
        try:
            _attempt_again(services, task)
        except Exception:  # one task's trouble must not stop the rest of the pass
            log.exception("task %s: recovery could not attempt it again", task.id)


def _attempt_again(services: Services, task: Task) -> None:
    maximum = services.settings.max_attempt_count
    if task.cancel_requested_by:
        log.warning("task %s: its worker stopped after a cancel; ending it", task.id)
        _fail_interrupted(services, task, f"cancelled by @{task.cancel_requested_by}",
                          outcome=CANCELLED)
    elif task.counted_attempts >= maximum:
        log.warning("task %s: its worker stopped during attempt %d of %d; failing it",
                    task.id, task.counted_attempts, maximum)
        _fail_interrupted(services, task, gave_up(task.counted_attempts, maximum))
    elif services.store.reattempt(task.id, task.attempt):
        log.warning("task %s: its worker stopped; re-attempt %d of %d", task.id,
                    task.counted_attempts + 1, maximum)
        say_reattempted(services, task)


def say_reattempted(services: Services, task: Task) -> None:
    """The status comment says the task waits for its next attempt."""
    if not task.status_comment_id:
        return
    try:
        client = services.github.repo_client(task.installation_id, task.repo, ACKNOWLEDGE_PERMISSIONS)
        replies.editor(client, task)(task.status_comment_id, status.reattempt(
            task.id, task.counted_attempts + 1, services.settings.max_attempt_count))
    except GitHubError as error:
        log.warning("task %s: could not say it is re-attempted: %s", task.id, error)


def remove_leftovers(services: Services) -> None:
    """Remove this store's containers and work trees on this host whose attempt is not live."""
    store = services.store
    # Read first: an attempt that starts after this read was already counted as live.
    live = store.live_attempts()
    containers = remove_task_containers(services.docker, services.instance, keep=live)
    # A tree stays while a container that could still write to it exists.
    keep_trees = live | {(task_id, attempt) for task_id, attempt in
                         attempts_with_containers(services.docker, services.instance)
                         if attempt is not None}
    trees = workspace.remove_leftovers(services.work_trees, keep=keep_trees)
    # Trees of an earlier version's layout, once their task has ended.
    trees += workspace.remove_older_layout(services.settings.workspaces_path,
                                           keep=store.unfinished_ids())
    if containers or trees:
        log.info("removed %d leftover sandbox container(s) and %d work tree(s)",
                 len(containers), len(trees))


def _fail_interrupted(services: Services, task: Task, reason: str, *,
                      outcome: str = FAILED) -> None:
    """End a task whose worker is gone; nothing when another attempt took it meanwhile."""
    log.warning("task %s was left running by a process that is gone; ending it", task.id)
    # A running task ends only while the attempt that was lost is still its current one.
    fence = task.attempt if task.status == RUNNING else None
    try:
        if fence is not None:
            services.store.require_current(task.id, fence)
    except Superseded:
        return
    if task.status_comment_id or task.check_run_id:
        try:
            client = services.github.repo_client(task.installation_id, task.repo,
                                                 ACKNOWLEDGE_PERMISSIONS)
            if task.status_comment_id:
                replies.editor(client, task)(task.status_comment_id, (
                    status.cancelled(task.id, task.cancel_requested_by) if outcome == CANCELLED
                    else status.failed(task.id, reason)))
            if task.check_run_id:
                client.update_check_run(task.check_run_id, check_runs.finished(
                    "cancelled" if outcome == CANCELLED else "failure",
                    title="Interrupted", summary=reason))
        except GitHubError as error:
            log.warning("task %s: could not say it was interrupted: %s", task.id, error)
    try:
        services.store.finish(task.id, outcome, attempt=fence, error=reason)
    except Superseded:
        log.info("task %s: another attempt took it while it was being ended", task.id)
