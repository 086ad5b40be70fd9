"""The control commands: `cancel`, `retry`, `continue`, `status`, `help` and `pick` (in
runner/pick.py) on an issue or pull request.

They run when the command is acknowledged (its author's write access already checked), never
in a sandbox. `cancel` only marks tasks in the store: a waiting task ends at once, a running
one ends when the process running it notices (runner/cancel_watch.py).
"""

from __future__ import annotations

import logging

from app.commands import grammar_help
from app.repo_config import CONFIG_PATH, MAX_FILE_BYTES, ConfigError, describe, effective_config
from app.settings import Settings
from app.store import CANCELLED, COMPLETED, PENDING, RUNNING, Store, Task, utcnow
from runner import check_runs, pick, replies, status
from runner.github import CONFIG_READ_PERMISSIONS, GitHubApp, GitHubError, RepoClient

log = logging.getLogger(__name__)

STATUS_SHOWN = 20  # most recent tasks listed by `status`


def run_command(task: Task, *, client: RepoClient, store: Store, slug: str, trigger_label: str,
                web_url: str, settings: Settings | None = None,
                github: GitHubApp | None = None) -> None:
    """Carry out the command `task` holds and answer it; the command task then completes."""
    where = "pull request" if task.on_pull_request else "issue"
    if task.command == "cancel":
        answer = _cancel(task, client=client, store=store, where=where)
    elif task.command == "retry":
        answer = _retry(task, store=store, where=where)
    elif task.command == "continue":
        answer = _continue(task, client=client, store=store, where=where)
    elif task.command == "pick":
        answer = pick.pick(task, store=store, github=github)
    elif task.command == "status":
        tasks = store.work_on(task.repo, task.number)
        answer = status_report(tasks[-STATUS_SHOWN:], where=where, web_url=web_url,
                               positions={t.id: store.waiting_ahead_of(t.id) + 1
                                          for t in tasks if t.status == PENDING})
    else:
        answer = grammar_help(slug, trigger_label)
        if settings is not None and github is not None:
            answer += "\n\n" + _repository_config(task, github, settings)
    try:
        replies.react(client, task, "eyes")
        if answer:
            replies.post(client, task, answer)
    except GitHubError as error:
        log.warning("task %s: could not answer `%s`: %s", task.id, task.command, error)
    store.finish(task.id, COMPLETED, acknowledged_at=utcnow())
    log.info("task %s: `%s` on %s#%s by %s done", task.id, task.command, task.repo, task.number,
             task.requested_by)


def _repository_config(task: Task, github: GitHubApp, settings: Settings) -> str:
    """What `help` says of the repository's .github/async-code.yml: its effective values, or why
    it cannot be used. Read with a token of its own, minted only for a writer's `help`."""
    try:
        reader = github.repo_client(task.installation_id, task.repo, CONFIG_READ_PERMISSIONS)
        text = reader.file_on_default_branch(CONFIG_PATH, max_bytes=MAX_FILE_BYTES)
        return describe(effective_config(text, settings),
                        setup_network=settings.setup_network_name is not None)
    except ConfigError as error:
        return str(error)
    except GitHubError as error:
        return f"`{CONFIG_PATH}` could not be read: {error}"


def run_button(task: Task, *, client: RepoClient, store: Store) -> None:
    """Carry out a button pressed on a task's check run; the check run itself shows the result."""
    target = store.get(task.target_task) if task.target_task else None
    if target is None or (target.status_comment_id is None and target.group_of is None):
        # Only requests that were accepted (a side-by-side member's request was): a refused one
        # may be someone else's words.
        log.info("task %s: the check run's task is gone or was never accepted", task.id)
    elif task.command == "cancel":
        waiting, _running = store.request_cancel(target.repo, target.number, task.requested_by,
                                                 task_id=target.id)
        for cancelled in waiting:
            _announce_cancelled(cancelled, client, task.requested_by)
    elif task.command == "retry":
        store.record_retry(target, guid=task.delivery_guid, requested_by=task.requested_by,
                           requested_by_id=task.requested_by_id)
    elif _can_continue(target, client):
        store.record_continue(target, guid=task.delivery_guid, requested_by=task.requested_by,
                              requested_by_id=task.requested_by_id)
    store.finish(task.id, COMPLETED, acknowledged_at=utcnow())
    log.info("task %s: button `%s` on task %s by %s done", task.id, task.command,
             task.target_task, task.requested_by)


def _can_continue(target: Task, client: RepoClient) -> bool:
    """Continue works on the head the task pushed, and only while the pull request's head is
    still that commit: after someone else's push, the previous summary describes another tree."""
    if not (target.commit_sha and target.pr_number):
        log.info("nothing to continue: task %s pushed nothing", target.id)
        return False
    try:
        pull = client.pull_request(target.pr_number)
        head, state = pull["head"]["sha"], pull.get("state")
    except (GitHubError, KeyError, TypeError) as error:
        log.warning("could not read the head of #%s to continue task %s: %s", target.pr_number,
                    target.id, error)
        return False
    if state != "open":
        log.info("not continuing task %s: #%s is closed", target.id, target.pr_number)
        return False
    if head != target.commit_sha:
        log.info("not continuing task %s: the head of #%s moved past its commit", target.id,
                 target.pr_number)
        return False
    return True


def _cancel(task: Task, *, client: RepoClient, store: Store, where: str) -> str:
    waiting, running = store.request_cancel(task.repo, task.number, task.requested_by)
    for cancelled in waiting:
        _announce_cancelled(cancelled, client, task.requested_by)
    if not waiting and not running:
        return f"Nothing to cancel: no task is waiting or running on this {where}."
    parts = [f"stopping `{t.id[:8]}` (running)" for t in running]
    parts += [f"cancelled `{t.id[:8]}` (waiting)" for t in waiting]
    return "🛑 " + "; ".join(parts) + "."


def _announce_cancelled(cancelled: Task, client: RepoClient, by: str) -> None:
    """Each place that shows the task is told on its own: one failing leaves the others right."""
    updates = []
    if cancelled.status_comment_id:
        updates.append(("status comment", lambda: replies.editor(client, cancelled)(
            cancelled.status_comment_id, status.cancelled(cancelled.id, by))))
    if cancelled.check_run_id:
        updates.append(("check run", lambda: client.update_check_run(
            cancelled.check_run_id, check_runs.finished(
                "cancelled", title=f"Cancelled by {by}", summary="Cancelled before it started."))))
    if cancelled.label:
        updates.append(("label", lambda: client.remove_label(cancelled.number, cancelled.label)))
    for what, update in updates:
        try:
            update()
        except GitHubError as error:
            log.warning("task %s: could not update its %s: %s", cancelled.id, what, error)


def _retry(task: Task, *, store: Store, where: str) -> str | None:
    # Only requests that were admitted: a refused one may have been written by someone without
    # write access, and `retry` must never run their words on a writer's behalf.
    earlier = [t for t in store.work_on(task.repo, task.number) if t.status_comment_id is not None]
    if not earlier:
        return f"Nothing to retry: no request on this {where} was accepted yet."
    retry = store.record_retry(earlier[-1], guid=task.delivery_guid,
                               requested_by=task.requested_by, requested_by_id=task.requested_by_id)
    log.info("task %s: retry of %s recorded as %s", task.id, earlier[-1].id, retry.id)
    return None  # the new task answers with its own status comment


def _continue(task: Task, *, client: RepoClient, store: Store, where: str) -> str | None:
    """As the check run's Continue button, for the last task that pushed here."""
    earlier = store.pushed_work_on(task.repo, task.number)
    if not earlier:
        return f"Nothing to continue: no task pushed work for this {where} yet."
    latest = earlier[-1]
    # After a side-by-side run, the member whose pull request is still open (the one picked).
    candidates = [latest] + ([t for t in reversed(earlier) if t.group_of == latest.group_of
                              and t.id != latest.id] if latest.group_of else [])
    chosen = next((candidate for candidate in candidates if _can_continue(candidate, client)), None)
    if chosen is None:
        return (f"Nothing to continue: the pull request's head moved past what task "
                f"`{latest.id[:8]}` pushed, or it is closed. Ask for the work anew instead.")
    carried = store.record_continue(chosen, guid=task.delivery_guid,
                                    requested_by=task.requested_by,
                                    requested_by_id=task.requested_by_id)
    log.info("task %s: continue of %s recorded as %s", task.id, chosen.id, carried.id)
    return None  # the new task answers with its own status comment


def status_report(tasks: list[Task], *, where: str, web_url: str,
                  positions: dict[str, int]) -> str:
    """A table of the tasks on one issue or pull request: state, position, link."""
    if not tasks:
        return f"No async-code tasks on this {where} yet."
    rows = []
    for task in tasks:
        state = task.status
        if task.status == PENDING:
            state = f"waiting (position {positions.get(task.id, '?')})"
        elif task.status == RUNNING and task.cancel_requested_by:
            state = "running, cancel requested"
        elif task.status == CANCELLED and task.cancel_requested_by:
            state = f"cancelled by `@{task.cancel_requested_by}`"
        link = task.pr_url or replies.link(task, web_url, task.status_comment_id)
        rows.append(f"| `{task.id[:8]}` | {state} | `@{task.requested_by}` | "
                    f"{task.created_at[:16].replace('T', ' ')} UTC | "
                    + (f"[link]({link})" if link else "") + " |")
    return (f"**async-code** tasks on this {where}, newest last:\n\n"
            "| Task | State | Asked by | Asked at | |\n|---|---|---|---|---|\n" + "\n".join(rows))
