"""Answer every new request at once, before it waits for an execution slot.

Writers get 👀 on their comment and the "queued" status message; anyone else gets one polite
reply and the task is rejected. Commands are carried out here (runner/control.py). Work on a
pull request is refused here when async-code may not push to it (a fork, a closed one).
Authorization fails closed: if GitHub cannot tell us the requester's permission, nothing runs.
"""

from __future__ import annotations

import enum
import logging

from app.commands import grammar_help
from app.labels import is_trigger_label
from app.settings import Settings
from app.store import FAILED, REJECTED, Store, Task, utcnow
from runner import check_runs, control, pull_request_rules, replies, status
from runner.github import ACKNOWLEDGE_PERMISSIONS, GitHubApp, GitHubError, RepoClient

log = logging.getLogger(__name__)

WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})


class Admission(enum.Enum):
    ACCEPT = "accept"
    NOT_ALLOWED = "not allowed"
    UNREADABLE = "unreadable request"
    NO_INSTRUCTION = "no instruction"
    QUEUE_FULL = "queue full"


def admit(permission: str, instruction: str, queued_for_repo: int, max_queue: int,
          problem: str | None = None) -> Admission:
    if permission not in WRITE_PERMISSIONS:
        return Admission.NOT_ALLOWED
    if problem is not None:
        return Admission.UNREADABLE
    if not instruction.strip():
        return Admission.NO_INSTRUCTION
    if queued_for_repo >= max_queue:
        return Admission.QUEUE_FULL
    return Admission.ACCEPT


def refusal(admission: Admission, task: Task, slug: str, max_queue: int,
            trigger_label: str = "async-code") -> str:
    if admission is Admission.NOT_ALLOWED:
        return (f"Sorry @{task.requested_by}, only people with write access to this repository "
                f"can ask @{slug} for changes.")
    if admission is Admission.UNREADABLE:
        return f"@{task.requested_by} {task.problem} Nothing was started.\n\n" + grammar_help(slug, trigger_label)
    if admission is Admission.NO_INSTRUCTION:
        return (f"@{task.requested_by} tell me what to do on the same line or the lines after the "
                f"mention, for example:\n\n```\n@{slug} make the CLI print its version with "
                f"--version\n```")
    waiting = f"{max_queue} task{'s' if max_queue != 1 else ''}"
    return (f"Sorry @{task.requested_by}, this repository already has {waiting} waiting. "
            f"Please ask again when some of them have finished.")


def acknowledge(task: Task, *, github: GitHubApp, store: Store, slug: str, max_queue: int,
                trigger_label: str = "async-code", web_url: str = "https://github.com",
                settings: Settings | None = None) -> None:
    refused = store.installation_refusal(task.installation_id, task.repo)
    if refused is not None:
        # No GitHub call: it would fail, and there is no one to tell there.
        log.info("task %s for %s refused: %s", task.id, task.repo, refused)
        store.finish(task.id, REJECTED, error=refused, acknowledged_at=utcnow())
        return
    try:
        client = github.repo_client(task.installation_id, task.repo, ACKNOWLEDGE_PERMISSIONS)
        permission = client.permission(task.requested_by)
    except GitHubError as error:
        # Fail closed: without a permission answer nothing runs, and nothing can be posted.
        log.warning("task %s: cannot check %s's permission on %s: %s", task.id,
                    task.requested_by, task.repo, error)
        store.finish(task.id, FAILED, error=str(error), acknowledged_at=utcnow())
        return

    if task.trigger == "check_run":
        # A button: nothing is posted either way; the check run shows what happened.
        if permission in WRITE_PERMISSIONS:
            control.run_button(task, client=client, store=store)
        else:
            log.info("task %s: %s (%s) pressed `%s` on a check run and may not write; nothing runs",
                     task.id, task.requested_by, permission, task.command)
            store.release_button(task.id)  # the button still works for someone who may write
            store.finish(task.id, REJECTED, error="not allowed", acknowledged_at=utcnow())
        return
    if task.command is not None and permission in WRITE_PERMISSIONS and task.problem is None:
        control.run_command(task, client=client, store=store, slug=slug,
                            trigger_label=trigger_label, web_url=web_url, settings=settings,
                            github=github)
        return
    admission = admit(permission, task.instruction, store.queued_for_repo(task.repo), max_queue,
                      task.problem)
    if admission is not Admission.ACCEPT:
        log.info("task %s rejected (%s; %s has %s)", task.id, admission.value, task.requested_by,
                 permission)
        _refuse(task, client, store, refusal(admission, task, slug, max_queue, trigger_label),
                admission.value)
        return

    if task.label is not None and not _label_still_there(task, client, store):
        return
    pull = None
    if task.on_pull_request:
        try:
            pull = client.pull_request(task.number)
            reason = pull_request_rules.refusal(pull, repo=task.repo)
        except GitHubError as error:
            log.warning("task %s: could not read pull request #%s: %s", task.id, task.number, error)
            store.finish(task.id, FAILED, error=f"could not read the pull request: {error}",
                         acknowledged_at=utcnow())
            return
        if reason is not None:
            log.info("task %s refused: %s", task.id, reason)
            _refuse(task, client, store, f"@{task.requested_by} {reason}", "pull request refused")
            return

    try:
        replies.react(client, task, "eyes")
        ahead = store.ahead_on_same(task.id)
        position = store.waiting_ahead_of(task.id) + 1
        comment_id = replies.post(client, task, status.queued(
            task.id, position, behind=ahead[-1].id if ahead else None,
            on_pull_request=task.on_pull_request))
    except GitHubError as error:
        log.warning("task %s: could not acknowledge: %s", task.id, error)
        store.finish(task.id, FAILED, error=f"could not post to the issue: {error}",
                     acknowledged_at=utcnow())
        return
    # A pull request's head gets the task's check run now; an issue has no commit of the task's
    # until it pushes.
    check_run_id = None
    if pull is not None:
        check_run_id = check_runs.create(client, task, check_runs.queued(
            task, head_sha=pull["head"]["sha"],
            details_url=replies.link(task, web_url, comment_id)))
    if not store.mark_queued(task.id, status_comment_id=comment_id, check_run_id=check_run_id):
        # Another acknowledger took it over while this one was held up past the lease: what
        # this one posted must not look like a second task waiting.
        log.warning("task %s was acknowledged by another process meanwhile; withdrawing its "
                    "second acknowledgement (comment %s)", task.id, comment_id)
        _withdraw(task, client, comment_id, check_run_id)
        return
    log.info("task %s acknowledged, queued at position %d", task.id, position)


def _withdraw(task: Task, client: RepoClient, comment_id: int, check_run_id: int | None) -> None:
    """Say, where a second acknowledgement of one task went, that the first one counts."""
    try:
        replies.editor(client, task)(comment_id, status.acknowledged_twice(task.id))
        if check_run_id is not None:
            client.update_check_run(check_run_id, check_runs.finished(
                "neutral", title="Acknowledged twice",
                summary="This task was acknowledged twice; its other check run follows it."))
    except GitHubError as error:
        log.warning("task %s: could not withdraw its second acknowledgement: %s", task.id, error)


def _refuse(task: Task, client: RepoClient, store: Store, answer: str, reason: str) -> None:
    """One reply, the label taken off (adding it again asks again), the task rejected."""
    try:
        replies.post(client, task, answer)
        if task.label is not None:
            client.remove_label(task.number, task.label)
    except GitHubError as error:
        log.warning("task %s: could not post the refusal: %s", task.id, error)
    store.finish(task.id, REJECTED, error=reason, acknowledged_at=utcnow())


def _label_still_there(task: Task, client: RepoClient, store: Store) -> bool:
    """A label taken off before the task was acknowledged withdraws the request."""
    try:
        labels = client.issue_labels(task.number)
    except GitHubError as error:
        log.warning("task %s: could not read the labels of #%s: %s", task.id, task.number, error)
        store.finish(task.id, FAILED, error=f"could not read the labels: {error}",
                     acknowledged_at=utcnow())
        return False
    if any(is_trigger_label(name, task.label) for name in labels):
        return True
    log.info("task %s withdrawn: the label %r is no longer on #%s", task.id, task.label, task.number)
    store.finish(task.id, REJECTED, error="label removed before the task started",
                 acknowledged_at=utcnow())
    return False
