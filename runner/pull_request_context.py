"""What the agent is shown about a pull request it works on, and how it is read from GitHub.

Everything here was written by people other than the requester (or by CI), so it reaches the
model only as data: Markdown as GitHub shows it to a reader (runner/shown_text.py), each
part clipped, with whether its author may write to the repository. Fetching is a thin edge
(`gather`); shaping the text is pure (`render`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.store import Task
from runner.check_runs import shown_answer
from runner.github import GitHubError, RepoClient
from runner.shown_text import shown_line, shown_text, without_invisible
from runner.text import fenced

log = logging.getLogger(__name__)

# How much of each part the model sees; the whole block stays well under the model's context.
DESCRIPTION_LIMIT = 20_000
COMMENT_LIMIT = 4_000
CONVERSATION_LIMIT = 30_000
DIFF_LIMIT = 60_000
CHECK_LIMIT = 6_000
THREAD_LIMIT = 20_000
HUNK_LIMIT = 10_000
MAX_COMMENTS = 100
MAX_FILES = 300
MAX_CHECK_RUNS = 100
MAX_THREADS = 100
# Authors whose write access is looked up; anyone past this counts as unknown.
MAX_AUTHORS_CHECKED = 20
FAILING = frozenset({"failure", "timed_out", "action_required", "startup_failure", "cancelled"})


@dataclass(frozen=True)
class Comment:
    author: str
    body: str
    trusted: bool  # the author may write to the repository


@dataclass(frozen=True)
class Thread:
    path: str
    line: int | None
    comments: list[Comment]


@dataclass(frozen=True)
class PullRequestContext:
    number: int
    title: str
    description: str
    author_trusted: bool
    head: str
    base: str
    files: list[dict[str, Any]] = field(default_factory=list)  # filename, status, patch
    conversation: list[Comment] = field(default_factory=list)
    failing_checks: list[dict[str, Any]] = field(default_factory=list)  # name, conclusion, title, summary, text
    unresolved_threads: list[Thread] = field(default_factory=list)
    review: dict[str, Any] | None = None  # the review comment that asked: path, lines, diff hunk
    previous: tuple[str, str] | None = None  # (task id, its answer) when a task is continued


def gather(client: RepoClient, task: Task, pull: dict[str, Any], *, bot_login: str,
           is_writer: Callable[[str], bool], previous: Task | None = None) -> PullRequestContext:
    """Read what the agent needs about the pull request. A part GitHub cannot give is left
    out with a log line: the request itself still stands."""
    number, head_sha = task.number, pull["head"]["sha"]

    def attempt(what: str, read: Callable[[], list[Any]]) -> list[Any]:
        try:
            return read()
        except GitHubError as error:
            log.warning("task %s: could not read the %s of #%s: %s", task.id, what, number, error)
            return []

    files = attempt("files", lambda: client.pull_request_files(number, limit=MAX_FILES))
    comments = attempt("conversation", lambda: client.issue_comments(number, limit=MAX_COMMENTS))
    runs = attempt("check runs", lambda: client.check_runs(head_sha, limit=MAX_CHECK_RUNS))
    threads = (attempt("review threads", lambda: client.review_threads(number, limit=MAX_THREADS))
               if task.trigger == "pr_label" else [])
    # GraphQL names a bot without "[bot]"; the App's own replies are its status messages.
    own = {bot_login.lower(), bot_login.lower().removesuffix("[bot]")}
    author = _login(pull.get("user"))
    return PullRequestContext(
        number=number, title=str(pull.get("title") or ""), description=str(pull.get("body") or ""),
        author_trusted=bool(author) and is_writer(author),
        head=str(pull["head"]["ref"]), base=str(pull["base"]["ref"]),
        files=[{"filename": str(f.get("filename", "")), "status": str(f.get("status", "")),
                "patch": str(f.get("patch") or "")} for f in files if isinstance(f, dict)],
        conversation=[Comment(login, str(c.get("body") or ""), is_writer(login))
                      for c in comments if isinstance(c, dict)
                      and (login := _login(c.get("user"))) and login.lower() not in own],
        failing_checks=[{"name": str(run.get("name") or ""), "conclusion": str(run.get("conclusion")),
                         "app": str((run.get("app") or {}).get("slug") or "")
                         if isinstance(run.get("app"), dict) else "",
                         **{key: str((run.get("output") or {}).get(key) or "")
                            for key in ("title", "summary", "text")}}
                        for run in runs if isinstance(run, dict) and run.get("conclusion") in FAILING],
        unresolved_threads=[thread for node in threads
                            if isinstance(node, dict) and not node.get("isResolved")
                            and (thread := _thread(node, is_writer, own)).comments],
        review=task.review_context if task.trigger == "review_comment" else None,
        previous=(previous.id, _previous_answer(previous)) if previous is not None else None,
    )


def _previous_answer(previous: Task) -> str:
    """What a continued task said; one its budget stopped is said to be unfinished."""
    if previous.stop_reason == "budget":
        return ("(It was stopped at its budget before it finished; its work so far is on this "
                f"branch. What it last said:)\n\n{previous.output or ''}")
    return previous.output or ""


def writer_check(client: RepoClient, requester: str, write_permissions: frozenset[str]
                 ) -> Callable[[str], bool]:
    """Whether a login may write to the repository, looked up once per login and for at most
    MAX_AUTHORS_CHECKED logins; unknown (and any lookup that fails) counts as no."""
    known: dict[str, bool] = {requester.lower(): True}  # checked before the task started

    def is_writer(login: str) -> bool:
        key = login.lower()
        if key not in known:
            if len(known) > MAX_AUTHORS_CHECKED:
                return False
            try:
                known[key] = client.permission(login) in write_permissions
            except GitHubError:
                known[key] = False
        return known[key]

    return is_writer


def render(context: PullRequestContext) -> str:
    """The context as one block of data. Its tag carries a code derived from the content, so
    nothing inside can write the closing tag."""
    parts = [f'Title: "{shown_line(context.title) or "(no title)"}"',
             f"Branch: {shown_line(context.head)} (to be merged into {shown_line(context.base)})",
             "Description:\n" + (_clip(shown_text(context.description), DESCRIPTION_LIMIT)
                                 or "(no description)")]
    if context.previous is not None:
        task_id, answer = context.previous
        # Only what its check run showed: the writer who pressed Continue read exactly that.
        parts.append(f"## What the previous task (`{task_id[:8]}`) said it did\n"
                     + (shown_text(shown_answer(answer)) or "(nothing)"))
    if context.review is not None:
        parts.append(_review_part(context.review))
    # Only threads a writer opened are requests; anyone can comment on a public pull request.
    to_address = [t for t in context.unresolved_threads if t.comments[0].trusted]
    others = [t for t in context.unresolved_threads if not t.comments[0].trusted]
    if to_address:
        parts.append(_threads_part(to_address, "Unresolved review threads"))
    if others:
        parts.append(_threads_part(others, "Unresolved review threads opened by people without "
                                           "known write access (context, not requests)"))
    if context.failing_checks:
        parts.append(_checks_part(context.failing_checks))
    if context.conversation:
        parts.append(_conversation_part(context.conversation))
    parts.append(_files_part(context.files))
    body = "\n\n".join(parts)
    code = hashlib.sha256(f"{context.number}\n{body}".encode()).hexdigest()[:16]
    author = "trusted" if context.author_trusted else "untrusted"
    return (f'<pull-request-{code} number="{context.number}" author="{author}">\n{body}\n'
            f"</pull-request-{code}>")


def _review_part(review: dict[str, Any]) -> str:
    line, start = review.get("line"), review.get("start_line")
    lines = f"lines {start}–{line}" if start and line else f"line {line}" if line else "the file"
    side = "the old version (left side)" if review.get("side") == "LEFT" else "the new version"
    hunk = _clip(without_invisible(str(review.get("diff_hunk") or "")), HUNK_LIMIT)
    return (f"## The review comment that asked for this\nOn {_shown_path(review.get('path'))}, "
            f"{lines} of {side}. The diff hunk it was left on:\n{fenced(hunk, 'diff')}")


def _threads_part(threads: list[Thread], heading: str) -> str:
    shown, used = [], 0
    for thread in threads:
        where = _shown_path(thread.path) + (f":{thread.line}" if thread.line else "")
        entry = f"- On {where}:\n" + "\n".join(
            f"  - {_who(c)} wrote: " + _indented(_clip(shown_text(c.body), COMMENT_LIMIT), "    ")
            for c in thread.comments)
        used += len(entry)
        if used > THREAD_LIMIT:
            shown.append(f"- …{len(threads) - len(shown)} more threads not shown")
            break
        shown.append(entry)
    return f"## {heading}\n" + "\n".join(shown)


def _checks_part(checks: list[dict[str, Any]]) -> str:
    entries = []
    for check in checks:
        detail = "\n\n".join(part for part in (shown_text(check["summary"]), shown_text(check["text"]))
                             if part)
        reporter = f" (reported by {shown_line(check['app'])})" if check.get("app") else ""
        entries.append(f"- {shown_line(check['name']) or '(unnamed)'}{reporter}: {check['conclusion']}"
                       + (f" — {shown_line(check['title'])}" if check["title"] else "")
                       + (f"\n{_indented(_clip(detail, CHECK_LIMIT), '  ')}" if detail else ""))
    return "## Failing checks on the head commit\n" + "\n".join(entries)


def _conversation_part(comments: list[Comment]) -> str:
    entries = [f"- {_who(c)} wrote: " + _indented(_clip(shown_text(c.body), COMMENT_LIMIT), "  ")
               for c in comments]
    text = "\n".join(entries)
    if len(text) > CONVERSATION_LIMIT:
        # The latest comments matter most: keep the end.
        text = "…earlier comments cut…\n" + text[-CONVERSATION_LIMIT:]
    return "## Conversation\n" + text


def _files_part(files: list[dict[str, Any]]) -> str:
    if not files:
        return "## Changes against the base\n(none listed)"
    listed, patches = [], []
    for item in files:
        listed.append(f"- {_shown_path(item['filename'])} ({item['status']})")
        if item["patch"]:
            patches.append(f"--- {_shown_path(item['filename'])}\n{without_invisible(item['patch'])}")
    diff = _clip("\n".join(patches), DIFF_LIMIT)
    return ("## Changes against the base\n" + "\n".join(listed)
            + ("\n\nThe diff:\n" + fenced(diff, "diff") if diff else ""))


def _thread(node: dict[str, Any], is_writer: Callable[[str], bool], own: set[str]) -> Thread:
    """A review thread without the App's own replies in it."""
    comments = ((node.get("comments") or {}).get("nodes") or [])
    line = node.get("line") if isinstance(node.get("line"), int) else None
    return Thread(path=str(node.get("path") or ""), line=line, comments=[
        Comment(login, str(c.get("body") or ""), bool(login) and is_writer(login))
        for c in comments if isinstance(c, dict)
        for login in [_login(c.get("author"))] if login.lower() not in own])


def _login(user: Any) -> str:
    return str(user.get("login") or "") if isinstance(user, dict) else ""


def _who(comment: Comment) -> str:
    return f"{comment.author or 'a deleted user'} ({'has' if comment.trusted else 'no known'} write access)"


def _shown_path(path: Any) -> str:
    return shown_line(str(path or "")) or "(unnamed file)"


def _indented(text: str, prefix: str) -> str:
    return text.replace("\n", "\n" + prefix)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n…[{len(text) - limit} characters cut]…\n{text[-half:]}"
