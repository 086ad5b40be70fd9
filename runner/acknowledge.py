"""Answer every new task at once, before it waits for an execution slot.

Writers get 👀 on their comment and the "queued" status comment; anyone else gets one polite
reply and the task is rejected. Authorization fails closed: if GitHub cannot tell us the
requester's permission, nothing runs.
"""

from __future__ import annotations

import enum
import logging

from app.store import FAILED, REJECTED, Store, Task, utcnow
from runner import status
from runner.github import ACKNOWLEDGE_PERMISSIONS, GitHubApp, GitHubError

log = logging.getLogger(__name__)

WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})


class Admission(enum.Enum):
    ACCEPT = "accept"
    NOT_ALLOWED = "not allowed"
    NO_INSTRUCTION = "no instruction"
    QUEUE_FULL = "queue full"


def admit(permission: str, instruction: str, queued_for_repo: int, max_queue: int) -> Admission:
    if permission not in WRITE_PERMISSIONS:
        return Admission.NOT_ALLOWED
    if not instruction.strip():
        return Admission.NO_INSTRUCTION
    if queued_for_repo >= max_queue:
        return Admission.QUEUE_FULL
    return Admission.ACCEPT


def refusal(admission: Admission, task: Task, slug: str, max_queue: int) -> str:
    if admission is Admission.NOT_ALLOWED:
        return (f"Sorry @{task.requested_by}, only people with write access to this repository "
                f"can ask @{slug} for changes.")
    if admission is Admission.NO_INSTRUCTION:
        return (f"@{task.requested_by} tell me what to do on the same line or the lines after the "
                f"mention, for example:\n\n```\n@{slug} make the CLI print its version with "
                f"--version\n```")
    waiting = f"{max_queue} task{'s' if max_queue != 1 else ''}"
    return (f"Sorry @{task.requested_by}, this repository already has {waiting} waiting. "
            f"Please ask again when some of them have finished.")


def acknowledge(task: Task, *, github: GitHubApp, store: Store, slug: str, max_queue: int) -> None:
    try:
        client = github.repo_client(task.installation_id, task.repo, ACKNOWLEDGE_PERMISSIONS)
        permission = client.permission(task.requested_by)
    except GitHubError as error:
        # Fail closed: without a permission answer nothing runs, and nothing can be posted.
        log.warning("task %s: cannot check %s's permission on %s: %s", task.id,
                    task.requested_by, task.repo, error)
        store.finish(task.id, FAILED, error=str(error), acknowledged_at=utcnow())
        return

    admission = admit(permission, task.instruction, store.queued_for_repo(task.repo), max_queue)
    if admission is not Admission.ACCEPT:
        log.info("task %s rejected (%s; %s has %s)", task.id, admission.value, task.requested_by,
                 permission)
        try:
            client.comment(task.number, refusal(admission, task, slug, max_queue))
        except GitHubError as error:
            log.warning("task %s: could not post the refusal: %s", task.id, error)
        store.finish(task.id, REJECTED, error=admission.value, acknowledged_at=utcnow())
        return

    try:
        if task.comment_id:
            client.react(task.comment_id, "eyes")
        position = store.waiting_ahead_of(task.id) + 1
        comment_id = client.comment(task.number, status.queued(task.id, position))
    except GitHubError as error:
        log.warning("task %s: could not acknowledge: %s", task.id, error)
        store.finish(task.id, FAILED, error=f"could not post to the issue: {error}",
                     acknowledged_at=utcnow())
        return
    # The status comment id and the acknowledgement land together, so a slot that claims the
    # task always finds the comment to edit.
    store.update(task.id, status_comment_id=comment_id, acknowledged_at=utcnow())
    log.info("task %s acknowledged, queued at position %d", task.id, position)
