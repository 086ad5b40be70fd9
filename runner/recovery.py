"""Start-up clean-up after a crash or restart: no orphan containers, no task stuck running."""

from __future__ import annotations

import logging

from app.store import FAILED
from runner import status
from runner.execute import Services
from runner.github import ACKNOWLEDGE_PERMISSIONS, GitHubError
from runner.sandbox import remove_task_containers

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted by a restart of the service; ask again to retry."


def recover(services: Services) -> None:
    """Fail tasks a previous process left running and remove their containers.

    Runs before any slot starts, so no task is running here yet: every labelled container
    belongs to a dead process.
    """
    removed = remove_task_containers(services.docker, keep=())
    if removed:
        log.info("removed %d leftover sandbox container(s)", len(removed))
    for task in services.store.running():
        log.warning("task %s was left running by a previous process; marking it failed", task.id)
        services.store.finish(task.id, FAILED, error=INTERRUPTED)
        if not task.status_comment_id:
            continue
        try:
            client = services.github.repo_client(task.installation_id, task.repo, ACKNOWLEDGE_PERMISSIONS)
            client.edit_comment(task.status_comment_id, status.failed(task.id, INTERRUPTED))
        except GitHubError as error:
            log.warning("task %s: could not update its status comment: %s", task.id, error)
