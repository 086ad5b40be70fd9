"""What happens when someone comments on an issue: maybe a task.

Only new comments on issues count. A mention on a pull request is left for the pull request
iteration work; edits and deletions never start work, so an edited comment cannot run twice.
"""

from __future__ import annotations

from typing import Any

from app.payload import LOGIN, REPO_FULL_NAME, MalformedPayload, read_id, read_object, read_text
from app.store import NewTask
from app.triggers import find_instruction, is_bot


def task_from_comment(payload: dict[str, Any], slug: str) -> NewTask | None:
    """The task an `issue_comment`/`created` delivery asks for, or None.

    Raises MalformedPayload when a field it reads is missing or not what GitHub sends. Every
    field is read before anything is decided, so whether a payload is malformed never depends
    on what the comment says.
    """
    on_pull_request = read_object(payload, "issue").get("pull_request") is not None
    sender, author = _user(payload, "sender"), _user(payload, "comment.user")
    body = read_text(payload, "comment.body", optional=True)
    repo = read_text(payload, "repository.full_name", pattern=REPO_FULL_NAME)
    installation_id = read_id(payload, "installation.id")
    number = read_id(payload, "issue.number")
    comment_id = read_id(payload, "comment.id")
    sender_id = read_id(payload, "sender.id")
    issue_title = read_text(payload, "issue.title", optional=True)
    issue_body = read_text(payload, "issue.body", optional=True)
    issue_author = _issue_author(payload)

    if on_pull_request or is_bot(sender) or is_bot(author):
        return None
    instruction = find_instruction(body, slug)
    if instruction is None:
        return None
    return NewTask(trigger="comment", repo=repo, installation_id=installation_id, number=number,
                   comment_id=comment_id, instruction=instruction, requested_by=sender["login"],
                   requested_by_id=sender_id, issue_title=issue_title, issue_body=issue_body,
                   issue_author=issue_author)


def _issue_author(payload: dict[str, Any]) -> str:
    """Who opened the issue; "" when the payload does not say, so its text counts as untrusted."""
    try:
        return read_text(payload, "issue.user.login", pattern=LOGIN)
    except MalformedPayload:
        return ""


def _user(payload: dict[str, Any], path: str) -> dict[str, str]:
    """The fields of a user object that `is_bot` and the task read, each checked."""
    return {"login": read_text(payload, f"{path}.login", pattern=LOGIN),
            "type": read_text(payload, f"{path}.type", optional=True)}
