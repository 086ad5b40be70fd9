"""Side-by-side runs: one request, several agents at once, one comparison.

`@async-code --agents claude,codex <instruction>` (or the config's `compare:`) is one task, the
request's, and it holds its issue's place in the queue like any other: the one-task-per-issue
rule counts the group as one, on both stores, and it runs in one slot (with one sandbox per
agent). Its job is here: it makes a member task per agent in the store, runs each member in a
thread of its own through runner/execute.py (each on its own branch
`<prefix><issue>-<agent>-<id8>`, ending in a draft pull request, then the repository's `test`
commands on what it pushed), waits for all of them, and posts the comparison once: posting
follows one fenced transition of the request in the store (`mark_compared`), and an attempt
after one that may have posted it looks for that comment first, so however its attempts go,
one comparison comment is posted (or, should GitHub refuse it, the status comment holds it).

A member's progress shows in the request's status comment; a member never posts a comment of
its own. A cancel reaches every member; a shutdown hands the request and its unfinished members
back together, and the next attempt starts only the members that had not ended.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from app.store import COMPLETED, FAILED, PENDING, RUNNING, Superseded, Task
from runner import comparison
from runner.artifacts import TRANSCRIPT, ArtifactError
from runner.cancel_watch import HandedBack
from runner.github import GitHubError
from runner.text import code_span, github_web_url

if TYPE_CHECKING:
    from runner.execute import _TaskRun

log = logging.getLogger(__name__)

EARLIER_COMMENTS_READ = 1_000  # of the issue's comments, looking for an earlier attempt's post


def run(request: _TaskRun, agents: list[str]) -> dict:
    """Run the request's members to their ends and post the comparison; what to store with the
    request. Raises as runner/execute.py expects: TaskCancelled, TaskFailed, HandedBack."""
    from runner.execute import INTERNAL_ERROR, TaskCancelled, TaskFailed, execute

    task, services = request.task, request.services
    store = services.store
    if (by := store.cancel_requested(task.id)) is not None:
        raise TaskCancelled(by)
    # Kept with the request: a re-attempt (or a retry) runs the same agents, whatever the
    # config's `compare` says by then.
    request.record(agents=agents)
    members = store.start_members(task, agents)
    board = _Board(request, members)
    board.show()
    handed_back = threading.Event()

    def run_member(member: Task) -> None:
        try:
            execute(member, services, abort_reason=request.abort_reason,
                    on_member_progress=board.progress)
        except HandedBack:
            handed_back.set()
        except Exception:
            log.exception("task %s: member %s crashed", task.id, member.id)
            try:
                store.finish(member.id, FAILED, attempt=member.attempt, error=INTERNAL_ERROR)
            except Superseded:
                pass
        finally:
            board.ended(member)

    threads = [threading.Thread(target=run_member, args=(member,), daemon=True,
                                name=f"{threading.current_thread().name}-{member.agent}")
               for member in members if member.status == RUNNING]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    if handed_back.is_set():
        raise HandedBack()
    request.require_current()
    if (by := store.cancel_requested(task.id)) is not None:
        raise TaskCancelled(by)
    ended = store.members(task.id)
    completed = [member for member in ended if member.status == COMPLETED]
    table = comparison.comment(task.id, ended, transcripts=_transcript_links(services, ended),
                               mention=_mention(request), github_host=request.github_host)
    comment_url = _post_comparison(request, table)
    request.report(comparison.compared(task.id, comment_url=comment_url, table=table,
                                       completed=len(completed), total=len(ended)), final=True)
    if not completed:
        raise TaskFailed("none of the agents finished; the comparison says why.")
    return {}


def pushed_before_cancel(store, task: Task) -> str:
    """For a cancelled side-by-side request, the pull requests its members had opened (they
    stay open, as drafts, for people to look at or close); "" for any other task."""
    if task.group_of is not None:
        return ""
    opened = [member for member in store.members(task.id) if member.pr_number and member.pr_url]
    if not opened:
        return ""
    listed = ", ".join(f"[#{m.pr_number}]({m.pr_url}) ({code_span(m.agent or '?')})" for m in opened)
    return (f"What its agents had pushed before stays open: {listed}. `pick` one, or close "
            "them.")


def _post_comparison(request: _TaskRun, body: str) -> str | None:
    """Post the comparison, once: the store's transition decides, before GitHub hears of it,
    and an attempt after one that may have posted it first looks for that comment. Its
    address on GitHub, or None when it could not be posted (the status comment then holds it)."""
    task, services = request.task, request.services
    web_url = github_web_url(services.settings.github_api_url)
    if not services.store.mark_compared(task.id, request.attempt):
        log.info("task %s: its comparison was posted before", task.id)
        found = services.store.get(task.id)
        posted = found.comparison_comment_id if found is not None else None
        return f"{web_url}/{task.repo}/issues/{task.number}#issuecomment-{posted}" if posted else None
    try:
        request.require_current()
        comment_id = _earlier_comparison(request) if request.attempt > 1 else None
        if comment_id is None:
            comment_id = request.client.comment(task.number, body)
    except GitHubError as error:
        log.warning("task %s: could not post the comparison: %s", task.id, error)
        return None
    request.record(comparison_comment_id=comment_id)
    return f"{web_url}/{task.repo}/issues/{task.number}#issuecomment-{comment_id}"


def _earlier_comparison(request: _TaskRun) -> int | None:
    """The comparison an earlier attempt posted but did not live to record, if it did."""
    mark = comparison.marker(request.task.id)
    bot = f"{request.services.settings.github_app_slug}[bot]"
    for comment in request.client.issue_comments(request.task.number, limit=EARLIER_COMMENTS_READ):
        if (comment.get("user") or {}).get("login") == bot and mark in (comment.get("body") or ""):
            return comment["id"]
    return None


def _transcript_links(services, members: list[Task]) -> dict[str, str]:
    """Fresh signed links to the members' transcripts, for those that stored one."""
    links: dict[str, str] = {}
    if services.artifacts is None:
        return links
    for member in members:
        if member.chat_history is None:
            continue  # it ended before its agent finished: nothing was stored
        try:
            links[member.id] = services.artifacts.signed_url(
                member.id, TRANSCRIPT, services.settings.artifact_link_seconds)
        except ArtifactError as error:
            log.warning("task %s: no link to its transcript: %s", member.id, error)
    return links


def _mention(request: _TaskRun) -> str:
    return f"@{request.services.settings.github_app_slug}"


class _Board:
    """The members' progress, shown in the request's status comment (a request on an issue has
    no check run: each member's pull request gets its own). Members report from their own
    threads."""

    def __init__(self, request: _TaskRun, members: list[Task]):
        self._request = request
        self._members = {member.id: member for member in members}
        self._progress: dict[str, comparison.Progress] = {}
        self._lock = threading.Lock()

    def progress(self, member: Task, turns: int, tool: str | None) -> None:
        with self._lock:
            self._progress[member.id] = comparison.Progress(turns, tool)
        self.show(final=False)

    def ended(self, member: Task) -> None:
        """Read the member again from the store: its outcome shows at once."""
        try:
            found = self._request.services.store.get(member.id)
        except Exception:
            log.exception("task %s: could not read member %s", self._request.task.id, member.id)
            return
        if found is not None:
            with self._lock:
                self._members[member.id] = found
            if found.status not in (PENDING, RUNNING):
                try:
                    self.show()
                except Superseded:
                    pass

    def show(self, final: bool = True) -> None:
        with self._lock:
            members, progress = list(self._members.values()), dict(self._progress)
        body = comparison.running(self._request.task.id, members, progress)
        self._request.report(body, final=final)
