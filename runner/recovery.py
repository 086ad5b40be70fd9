"""Clean-up after a crash or restart: no orphan containers or work trees, no task stuck.

A task is held by the process named in `claimed_by` (host:pid), which refreshes the task's
heartbeat while it holds it. A task is orphaned when that process is gone: on this host that
is checked directly; for another host, by a heartbeat older than STALE_AFTER.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from app.store import FAILED, Task
from runner import check_runs, replies, status, workspace
from runner.services import Services
from runner.github import ACKNOWLEDGE_PERMISSIONS, GitHubError
from runner.sandbox import remove_task_containers, task_ids_with_containers

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted by a restart of the service; ask again to retry."
HEARTBEAT_INTERVAL = 30.0
RECOVERY_INTERVAL = 30.0
STALE_AFTER = timedelta(minutes=3)


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
    """Fail orphaned running tasks, hand back orphaned acknowledgements, remove leftovers.

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
    lost = [task for task in running if orphaned(task)]
    for task in lost:
        try:
            _fail_interrupted(services, task)
        except Exception:  # one task's trouble must not stop the rest of the pass
            log.exception("task %s: recovery could not mark it failed", task.id)


def remove_leftovers(services: Services) -> None:
    """Remove the containers and work trees on this host that no unfinished task owns."""
    store = services.store
    # Read now: a task claimed since any snapshot must keep its container and tree.
    live = store.unfinished_ids()
    containers = remove_task_containers(services.docker, services.instance, keep=live)
    # A tree stays while a container that could still write to it exists.
    keep_trees = live | task_ids_with_containers(services.docker, services.instance)
    trees = workspace.remove_leftovers(services.settings.workspaces_path, keep=keep_trees)
    if containers or trees:
        log.info("removed %d leftover sandbox container(s) and %d work tree(s)",
                 len(containers), len(trees))


def _fail_interrupted(services: Services, task: Task, reason: str = INTERRUPTED) -> None:
    log.warning("task %s was left running by a process that is gone; marking it failed", task.id)
    if task.status_comment_id or task.check_run_id:
        try:
            client = services.github.repo_client(task.installation_id, task.repo,
                                                 ACKNOWLEDGE_PERMISSIONS)
            if task.status_comment_id:
                replies.editor(client, task)(task.status_comment_id,
                                             status.failed(task.id, reason))
            if task.check_run_id:
                client.update_check_run(task.check_run_id, check_runs.finished(
                    "failure", title="Interrupted", summary=reason))
        except GitHubError as error:
            log.warning("task %s: could not say it was interrupted: %s", task.id, error)
    services.store.finish(task.id, FAILED, error=reason)
