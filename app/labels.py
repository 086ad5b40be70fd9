"""What happens when someone adds the trigger label to an issue or a pull request.

On an issue the issue itself is the request: its title and description, ending in a pull
request. On a pull request the agent works on the pull request's branch, on its unresolved
review comments and failing checks. The label is removed when the task ends, so adding it
again asks again.
"""

from __future__ import annotations

from typing import Any

from app.payload import (REPO_FULL_NAME, MalformedPayload, read_id, read_login_or_empty,
                         read_object, read_text, read_user)
from app.store import NewTask
from app.triggers import is_bot

# GitHub allows 50 characters in a label name.
MAX_LABEL_CHARS = 100


def issue_instruction(number: int) -> str:
    return f"Resolve issue #{number} as its title and description ask."


def pull_request_instruction(number: int) -> str:
    return (f"Work on pull request #{number}: address the unresolved review threads opened by "
            "people with write access, and make its failing checks pass.")


def is_trigger_label(name: str, trigger_label: str) -> bool:
    # GitHub treats label names without regard to case; ASCII case, as its own comparisons do.
    return name.isascii() and name.lower() == trigger_label.lower()


def task_from_issue_label(payload: dict[str, Any], trigger_label: str) -> NewTask | None:
    """The task an `issues`/`labeled` delivery asks for, or None."""
    fields = _read_labeled(payload, "issue")
    # A pull request's labels arrive as `pull_request` events; never act on both.
    if read_object(payload, "issue").get("pull_request") is not None:
        return None
    if not fields or not is_trigger_label(fields["label"], trigger_label):
        return None
    return NewTask(trigger="label", instruction=issue_instruction(fields["number"]), **fields)


def task_from_pull_request_label(payload: dict[str, Any], trigger_label: str) -> NewTask | None:
    """The task a `pull_request`/`labeled` delivery asks for, or None."""
    fields = _read_labeled(payload, "pull_request")
    if not fields or not is_trigger_label(fields["label"], trigger_label):
        return None
    return NewTask(trigger="pr_label", instruction=pull_request_instruction(fields["number"]),
                   **fields)


def _read_labeled(payload: dict[str, Any], subject: str) -> dict[str, Any] | None:
    """The task fields of a labeled delivery on `subject` ("issue" or "pull_request"); None
    when a bot added the label. Every field is read first, so a malformed payload is refused
    whatever the label is."""
    sender = read_user(payload, "sender")
    fields = {
        "label": read_text(payload, "label.name"),
        "repo": read_text(payload, "repository.full_name", pattern=REPO_FULL_NAME),
        "installation_id": read_id(payload, "installation.id"),
        "number": read_id(payload, f"{subject}.number"),
        "requested_by": sender["login"],
        "requested_by_id": read_id(payload, "sender.id"),
        "issue_title": read_text(payload, f"{subject}.title", optional=True),
        "issue_body": read_text(payload, f"{subject}.body", optional=True),
        "issue_author": read_login_or_empty(payload, f"{subject}.user.login"),
        "comment_id": None,
    }
    if len(fields["label"]) > MAX_LABEL_CHARS:
        raise MalformedPayload(f"label.name is longer than {MAX_LABEL_CHARS} characters")
    return None if is_bot(sender) else fields
