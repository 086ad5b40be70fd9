"""What happens when someone comments on an issue or a pull request: maybe a task or a command.

Only new comments count: edits and deletions never start work, so an edited comment cannot run
twice. On an issue the task ends in a new pull request; on a pull request it pushes to the
pull request's branch.
"""

from __future__ import annotations

from typing import Any

from app.commands import read_request
from app.payload import REPO_FULL_NAME, read_id, read_login_or_empty, read_object, read_text, read_user
from app.store import NewTask
from app.triggers import find_instruction, is_bot

ISSUE_ONLY_OPTIONS = "`--base` and `--draft` only apply to requests on issues: a pull request keeps its base and its draft state."
SIDE_BY_SIDE_ON_ISSUES = ("`--agents` only applies to requests on issues: side by side, each agent "
                          "opens a pull request of its own, and a pull request has one branch to "
                          "push to. Ask on an issue, or give one agent with `--agent`.")


def task_from_comment(payload: dict[str, Any], slug: str) -> NewTask | None:
    """The task an `issue_comment`/`created` delivery asks for, or None.

    Raises MalformedPayload when a field it reads is missing or not what GitHub sends. Every
    field is read before anything is decided, so whether a payload is malformed never depends
    on what the comment says.
    """
    on_pull_request = read_object(payload, "issue").get("pull_request") is not None
    sender, author = read_user(payload, "sender"), read_user(payload, "comment.user")
    body = read_text(payload, "comment.body", optional=True)
    repo = read_text(payload, "repository.full_name", pattern=REPO_FULL_NAME)
    installation_id = read_id(payload, "installation.id")
    number = read_id(payload, "issue.number")
    comment_id = read_id(payload, "comment.id")
    sender_id = read_id(payload, "sender.id")
    issue_title = read_text(payload, "issue.title", optional=True)
    issue_body = read_text(payload, "issue.body", optional=True)
    issue_author = read_login_or_empty(payload, "issue.user.login")

    if is_bot(sender) or is_bot(author):
        return None
    instruction = find_instruction(body, slug)
    if instruction is None:
        return None
    return NewTask(trigger="pr_comment" if on_pull_request else "comment", repo=repo,
                   installation_id=installation_id, number=number, comment_id=comment_id,
                   requested_by=sender["login"], requested_by_id=sender_id,
                   issue_title=issue_title, issue_body=issue_body, issue_author=issue_author,
                   **request_fields(instruction, on_pull_request=on_pull_request))


def request_fields(instruction: str, *, on_pull_request: bool) -> dict[str, Any]:
    """What a mention's text asks for, as task fields: a command, or work with its options."""
    request = read_request(instruction)
    problem = request.problem
    if problem is None and on_pull_request and (request.base is not None or request.draft):
        problem = ISSUE_ONLY_OPTIONS
    if problem is None and on_pull_request and request.agents is not None:
        problem = SIDE_BY_SIDE_ON_ISSUES
    return {"instruction": request.instruction, "command": request.command, "problem": problem,
            "base_branch": request.base, "draft": request.draft, "model": request.model,
            "agent": request.agent,
            "agents": list(request.agents) if request.agents is not None else None,
            "picked_pr": request.picked_pr}
