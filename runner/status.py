"""The one status comment per task: what it says at each stage, and how often it is edited.

The comment is posted once ("queued") and then only edited, so a reader of the issue sees one
line of truth per task instead of a thread of bot noise.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from app.budget import format_usd
from runner.text import DEFAULT_GITHUB_HOST, code_span, fit_body, neutralise

PROGRESS_INTERVAL = 10.0  # seconds between progress edits; GitHub rate-limits content creation
# The model names the tool it calls; only a name the Messages API could accept is shown.
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def shown_tool(name: str | None) -> str | None:
    """A tool name the model gave, if it is one the Messages API could accept; else "unknown"."""
    return name if name is None or _TOOL_NAME.fullmatch(name) else "unknown"


def footer(task_id: str) -> str:
    """The line that ends every comment about a task: which task it is."""
    return f"\n\n<sub>async-code task `{task_id[:8]}`</sub>"


_footer = footer


def queued(task_id: str, position: int, *, behind: str | None = None,
           on_pull_request: bool = False) -> str:
    """`behind` is the id of a task on the same issue or pull request that goes first."""
    wait = ""
    if behind:
        where = "pull request" if on_pull_request else "issue"
        wait = f" It starts when task `{behind[:8]}` on this {where} has finished."
    return f"⏳ **async-code** queued (position {position}).{wait}" + _footer(task_id)


def acknowledged_twice(task_id: str) -> str:
    """What a second acknowledgement of one task becomes: the first one tracks the task."""
    return ("↩️ **async-code** acknowledged this request twice; the other status comment "
            "follows it." + _footer(task_id))


def cancelled(task_id: str, by: str, *, kept: str = "") -> str:
    """`kept`: Markdown, written by async-code, naming what was pushed before the cancel (a
    side-by-side run's members may have opened pull requests by then)."""
    if kept:
        return f"🛑 **async-code** cancelled by @{by}. {kept}" + _footer(task_id)
    return f"🛑 **async-code** cancelled by @{by}; nothing was pushed." + _footer(task_id)


def handed_back(task_id: str) -> str:
    return ("⏸️ **async-code** handed back: the worker is shutting down; another will carry on."
            + _footer(task_id))


def reattempt(task_id: str, attempt: int, max_attempts: int) -> str:
    """The task waits to be started again after the worker running it stopped."""
    return (f"🔁 **async-code** re-attempt {attempt} of {max_attempts}: the worker running it "
            "stopped. It starts again on another worker." + _footer(task_id))


def running(task_id: str, turns: int = 0, last_tool: str | None = None) -> str:
    last_tool = shown_tool(last_tool)
    detail = f" turn {turns}" + (f", last tool `{last_tool}`" if last_tool else "") if turns else " starting"
    return f"⚙️ **async-code** running:{detail}." + _footer(task_id)


def figures(seconds: float, tokens: int, cost: float | None = None) -> str:
    """How long a task took and what it used: "1m 05s · 12,345 tokens · $0.08"."""
    line = f"{format_duration(seconds)} · {tokens:,} tokens"
    return line + (f" · {format_usd(cost)}" if cost is not None else "")


def done(task_id: str, *, pr_number: int, pr_url: str, files_changed: int, seconds: float,
         tokens: int, left_out: int = 0, cost: float | None = None) -> str:
    files = f"{files_changed} file{'s' if files_changed != 1 else ''} changed"
    if left_out:
        files += f" · {left_out:,} left out (listed in the pull request)"
    return (f"✅ **async-code** done: opened [#{pr_number}]({pr_url}).\n\n"
            f"{files} · {figures(seconds, tokens, cost)}" + _footer(task_id))


def pushed(task_id: str, *, branch: str, sha: str, commit_url: str, summary: str,
           files_changed: int, seconds: float, tokens: int, left_out: int = 0,
           cost: float | None = None, github_host: str = DEFAULT_GITHUB_HOST) -> str:
    """A pull request task's result: the commit it pushed and the agent's one-line summary,
    made inert."""
    files = f"{files_changed} file{'s' if files_changed != 1 else ''} changed"
    if left_out:
        files += f" · {left_out:,} left out (listed in the commit message)"
    line = neutralise(summary, github_host=github_host)
    return (f"✅ **async-code** pushed [`{sha[:7]}`]({commit_url}) to {code_span(branch)}: {line}\n\n"
            f"{files} · {figures(seconds, tokens, cost)}" + _footer(task_id))


def stopped_at_budget(task_id: str, *, spent: str, pushed_to: str, files_changed: int,
                      seconds: float, tokens: int, cost: float | None, mention: str,
                      left_out: int = 0) -> str:
    """A task whose budget ran out after it changed files: they were committed and pushed.
    `spent` is the budget's figures and `pushed_to` Markdown naming where the work went, both
    written by async-code itself."""
    files = f"{files_changed} file{'s' if files_changed != 1 else ''} changed"
    if left_out:
        files += f" · {left_out:,} left out"
    return (f"⏸️ **async-code** stopped at budget ({spent}). What it had done is committed "
            f"and pushed: {pushed_to}.\n\nTo carry on with a fresh budget, press **Continue** "
            f"on its check run or comment `{mention} continue`.\n\n"
            f"{files} · {figures(seconds, tokens, cost)}" + _footer(task_id))


def stopped_at_budget_unchanged(task_id: str, answer: str, *, spent: str, seconds: float,
                                tokens: int, cost: float | None,
                                github_host: str = DEFAULT_GITHUB_HOST) -> str:
    """A task whose budget ran out before it changed a file: its last words, quoted and inert."""
    quoted = "\n".join("> " + line for line in (answer.strip() or "(nothing)").splitlines())
    return (f"⏸️ **async-code** stopped at budget ({spent}) before it changed any file. What "
            "it last said:\n\n" + fit_body(neutralise(quoted, github_host=github_host), limit=60_000)
            + "\n\nAsk again with a smaller request, or with a larger budget in "
            "`.github/async-code.yml`.\n\n" + figures(seconds, tokens, cost) + _footer(task_id))


def no_changes(task_id: str, answer: str, *, seconds: float, tokens: int,
               left_out: str = "", cost: float | None = None,
               github_host: str = DEFAULT_GITHUB_HOST) -> str:
    """The agent's answer, quoted and inert; links are kept only to `github_host`. `left_out`
    lists, already inert, what the agent wrote that could not be proposed."""
    quoted = "\n".join("> " + line for line in (answer.strip() or "(no answer)").splitlines())
    head = "💬 **async-code** no changes: the agent answered without editing any file.\n\n"
    if left_out:
        head = ("💬 **async-code** no changes: nothing the agent wrote can be proposed.\n\n"
                f"Left out:\n{left_out}\n\n")
    tail = f"\n\n{figures(seconds, tokens, cost)}" + _footer(task_id)
    return head + fit_body(neutralise(quoted, github_host=github_host), limit=60_000) + tail


def failed(task_id: str, reason: str, *, github_host: str = DEFAULT_GITHUB_HOST) -> str:
    """Why the task failed. The reason may quote the agent or the model API, so it is inert."""
    return f"❌ **async-code** failed: {neutralise(reason, github_host=github_host)}" + _footer(task_id)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def with_note(body: str, note: str) -> str:
    """`body` with a line written by async-code itself (a link it made) before its footer."""
    if not note:
        return body
    head, footer, tail = body.rpartition("\n\n<sub>")
    return f"{head}\n\n{note}{footer}{tail}" if footer else f"{body}\n\n{note}"


class StatusComment:
    """Edits one comment; progress edits are throttled, final ones always go through. A final
    body gains `note` (the link to the task's full transcript, once there is one)."""

    def __init__(self, edit: Callable[[int, str], None], comment_id: int, *,
                 interval: float = PROGRESS_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self._edit = edit
        self.comment_id = comment_id
        self._interval = interval
        self._clock = clock
        self._last_edit: float | None = None
        self._last_body: str | None = None
        self._lock = threading.Lock()
        self.note = ""

    def progress(self, body: str) -> bool:
        """Edit unless the last edit was less than `interval` ago. True if edited."""
        with self._lock:
            now = self._clock()
            if self._last_edit is not None and now - self._last_edit < self._interval:
                return False
            return self._apply(body, now)

    def final(self, body: str) -> None:
        with self._lock:
            self._apply(with_note(body, self.note) if isinstance(body, str) else body,
                        self._clock())

    def _apply(self, body: str, now: float) -> bool:
        if body == self._last_body:
            return False
        self._edit(self.comment_id, body)
        self._last_edit, self._last_body = now, body
        return True
