"""What happens when someone comments on an issue: maybe a task.

Only new comments on issues count. A mention on a pull request is left for the pull request
iteration work; edits and deletions never start work, so an edited comment cannot run twice.
"""

from __future__ import annotations

from typing import Any

from app.store import NewTask
from app.triggers import find_instruction, is_bot


def task_from_comment(payload: dict[str, Any], slug: str) -> NewTask | None:
    """The task an `issue_comment`/`created` delivery asks for, or None."""
    issue = payload.get("issue") or {}
    comment = payload.get("comment") or {}
    sender = payload.get("sender") or {}
    repository = payload.get("repository") or {}
    installation = payload.get("installation") or {}
    if issue.get("pull_request") is not None:
        return None
    if is_bot(sender) or is_bot(comment.get("user") or {}):
        return None
    if not installation.get("id") or not repository.get("full_name") or not issue.get("number"):
        return None
    instruction = find_instruction(comment.get("body") or "", slug)
    if instruction is None:
        return None
    return NewTask(
        trigger="comment",
        repo=repository["full_name"],
        installation_id=int(installation["id"]),
        number=int(issue["number"]),
        comment_id=comment.get("id"),
        instruction=instruction,
        requested_by=sender.get("login", ""),
        requested_by_id=sender.get("id"),
        issue_title=issue.get("title") or "",
        issue_body=issue.get("body") or "",
    )
