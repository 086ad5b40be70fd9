"""A request the service cannot run because a setting it needs is not set (the model's key, on
a first run): it is acknowledged as usual, then answered where it was asked with the setting's
name, and nothing runs. Setting it and restarting the service is all it takes."""

from __future__ import annotations

import logging

from app.store import FAILED, Task
from runner import check_runs, replies, status
from runner.github import ACKNOWLEDGE_PERMISSIONS, GitHubError
from runner.services import Services
from runner.text import github_web_host

log = logging.getLogger(__name__)


def reason(missing: list[str]) -> str:
    """What the requester reads: which settings, and who can set them."""
    names = " and ".join(f"`{name}`" for name in missing)
    verb, pronoun = ("is", "it") if len(missing) == 1 else ("are", "them")
    return (f"this async-code service cannot run tasks yet: {names} {verb} not set. Whoever runs "
            f"the service sets {pronoun} in its `.env` file (or environment) and restarts it; "
            "then ask again.")


def decline(task: Task, services: Services, missing: list[str]) -> None:
    """End `task` as failed, saying why in its status comment and its check run."""
    why = reason(missing)
    log.warning("task %s not run: %s not set", task.id, ", ".join(missing))
    host = github_web_host(services.settings.github_api_url)
    try:
        client = services.github.repo_client(task.installation_id, task.repo, ACKNOWLEDGE_PERMISSIONS)
        if task.status_comment_id:
            replies.editor(client, task)(task.status_comment_id,
                                         status.failed(task.id, why, github_host=host))
        if task.check_run_id:
            client.update_check_run(task.check_run_id, check_runs.finished(
                "failure", title="Not set up", summary=why, github_host=host))
        if task.label is not None:
            client.remove_label(task.number, task.label)  # adding it again asks again
    except GitHubError as error:
        log.warning("task %s: could not say why it was not run: %s", task.id, error)
    services.store.finish(task.id, FAILED, attempt=task.attempt, error=why)
