"""Start-up clean-up after a crash or restart: no orphan containers, no task stuck running."""

from __future__ import annotations

import logging
import os
import socket

from app.store import FAILED, Task
from runner import status
from runner.execute import Services
from runner.github import ACKNOWLEDGE_PERMISSIONS, GitHubError
from runner.sandbox import remove_task_containers

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted by a restart of the service; ask again to retry."


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


def is_orphaned(task: Task, *, host: str, own_pid: int, alive=_pid_alive) -> bool:
    """A running task whose process on this host is gone (or is us: we have claimed nothing yet).

    Tasks claimed on other hosts are left to them.
    """
    if not task.claimed_by:
        return True
    claimed_host, _, pid = task.claimed_by.rpartition(":")
    if claimed_host != host or not pid.isdigit():
        return False
    # A restarted container keeps its hostname and may get the same pid again.
    return int(pid) == own_pid or not alive(int(pid))


def recover(services: Services) -> None:
    """Fail tasks a dead process left running and remove sandbox containers nobody runs.

    Runs before any slot of this process starts.
    """
    host, own_pid = socket.gethostname(), os.getpid()
    running = services.store.running()
    orphaned = [task for task in running if is_orphaned(task, host=host, own_pid=own_pid)]
    still_running = {task.id for task in running} - {task.id for task in orphaned}
    for task in services.store.unacknowledged():
        if task.claimed_by and is_orphaned(task, host=host, own_pid=own_pid):
            # Its acknowledgement was cut short; hand it back to be acknowledged.
            services.store.update(task.id, claimed_by=None)
    removed = remove_task_containers(services.docker, keep=still_running)
    if removed:
        log.info("removed %d leftover sandbox container(s)", len(removed))
    for task in orphaned:
        log.warning("task %s was left running by a previous process; marking it failed", task.id)
        if task.status_comment_id:
            try:
                client = services.github.repo_client(task.installation_id, task.repo,
                                                     ACKNOWLEDGE_PERMISSIONS)
                client.edit_comment(task.status_comment_id, status.failed(task.id, INTERRUPTED))
            except GitHubError as error:
                log.warning("task %s: could not update its status comment: %s", task.id, error)
        services.store.finish(task.id, FAILED, error=INTERRUPTED)
