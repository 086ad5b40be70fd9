"""Where the App answers a task: a comment on the issue or pull request, or, for a request
made in a review comment, a reply in that review thread. Its status message lives there too.
"""

from __future__ import annotations

from collections.abc import Callable

from app.store import Task
from runner.github import RepoClient


def _thread_id(task: Task) -> int | None:
    if task.trigger != "review_comment" or not isinstance(task.review_context, dict):
        return None
    thread = task.review_context.get("thread_id")
    return thread if isinstance(thread, int) else task.comment_id


def post(client: RepoClient, task: Task, body: str) -> int:
    """Answer where the task was asked; returns the new comment's id."""
    thread = _thread_id(task)
    if thread is not None:
        return client.reply_in_review_thread(task.number, thread, body)
    return client.comment(task.number, body)


def editor(client: RepoClient, task: Task) -> Callable[[int, str], None]:
    """How to edit a comment `post` made for this task."""
    return client.edit_review_comment if _thread_id(task) is not None else client.edit_comment


def react(client: RepoClient, task: Task, content: str) -> None:
    """React to the comment that asked, when a comment asked."""
    if task.comment_id is None:
        return
    if task.trigger == "review_comment":
        client.react_to_review_comment(task.comment_id, content)
    else:
        client.react(task.comment_id, content)


def link(task: Task, web_url: str, comment_id: int | None) -> str | None:
    """The address of one of the task's comments on GitHub's web pages."""
    if comment_id is None:
        return None
    anchor = (f"discussion_r{comment_id}" if _thread_id(task) is not None
              else f"issuecomment-{comment_id}")
    kind = "pull" if task.on_pull_request else "issues"
    return f"{web_url}/{task.repo}/{kind}/{task.number}#{anchor}"
