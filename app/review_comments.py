"""What happens when someone mentions the App in a review comment on a pull request.

The task works on the pull request's branch with the commented file, lines and diff hunk as
context, and answers in the same review thread: that reply is its status message.
"""

from __future__ import annotations

from typing import Any

from app.comments import request_fields
from app.payload import (REPO_FULL_NAME, MalformedPayload, read_id, read_login_or_empty,
                         read_object, read_text, read_user)
from app.store import NewTask
from app.triggers import find_instruction, is_bot

MAX_PATH_CHARS = 4096  # Linux's PATH_MAX; GitHub's own limit on a path is lower
# A hunk runs from its header to the commented line, so one near the end of a large new file
# is long; only its end is kept (the agent sees at most a few thousand characters of it).
HUNK_KEPT_CHARS = 20_000


def task_from_review_comment(payload: dict[str, Any], slug: str) -> NewTask | None:
    """The task a `pull_request_review_comment`/`created` delivery asks for, or None."""
    sender, author = read_user(payload, "sender"), read_user(payload, "comment.user")
    body = read_text(payload, "comment.body", optional=True)
    repo = read_text(payload, "repository.full_name", pattern=REPO_FULL_NAME)
    installation_id = read_id(payload, "installation.id")
    number = read_id(payload, "pull_request.number")
    comment_id = read_id(payload, "comment.id")
    sender_id = read_id(payload, "sender.id")
    title = read_text(payload, "pull_request.title", optional=True)
    description = read_text(payload, "pull_request.body", optional=True)
    pr_author = read_login_or_empty(payload, "pull_request.user.login")
    context = review_context(payload)

    if is_bot(sender) or is_bot(author):
        return None
    instruction = find_instruction(body, slug)
    if instruction is None:
        return None
    return NewTask(trigger="review_comment", repo=repo, installation_id=installation_id,
                   number=number, comment_id=comment_id, requested_by=sender["login"],
                   requested_by_id=sender_id, issue_title=title, issue_body=description,
                   issue_author=pr_author, review_context=context,
                   **request_fields(instruction, on_pull_request=True))


def review_context(payload: dict[str, Any]) -> dict[str, Any]:
    """The commented file, line range, side and diff hunk, each checked."""
    path = read_text(payload, "comment.path")
    if not path or len(path) > MAX_PATH_CHARS:
        raise MalformedPayload("comment.path is not a file path")
    line = _optional_line(payload, "comment.line") or _optional_line(payload, "comment.original_line")
    start = (_optional_line(payload, "comment.start_line")
             or _optional_line(payload, "comment.original_start_line"))
    side = read_text(payload, "comment.side", optional=True)
    if side not in ("", "LEFT", "RIGHT"):
        raise MalformedPayload("comment.side is not LEFT or RIGHT")
    thread = _optional_line(payload, "comment.in_reply_to_id")
    return {"path": path, "line": line, "start_line": start if start != line else None,
            "side": side or "RIGHT", "diff_hunk": _diff_hunk(payload),
            "thread_id": thread or read_id(payload, "comment.id")}


def _diff_hunk(payload: dict[str, Any]) -> str:
    hunk = read_object(payload, "comment").get("diff_hunk")
    if hunk is None:
        return ""
    if not isinstance(hunk, str):
        raise MalformedPayload("comment.diff_hunk is not a string")
    # Its end, checked like any text (GitHub's payload cap bounds the whole before that).
    return read_text({"comment": {"diff_hunk": hunk[-HUNK_KEPT_CHARS:]}}, "comment.diff_hunk")


def _optional_line(payload: dict[str, Any], path: str) -> int | None:
    if read_object(payload, path.rsplit(".", 1)[0]).get(path.rsplit(".", 1)[1]) is None:
        return None
    return read_id(payload, path)
