"""A task as a check run in GitHub's checks UI: what it says at each stage, and its buttons.

Pure functions build the fields GitHub takes; `CheckRun` sends them for one check run, with
progress throttled like the status comment. Everything the agent or the request wrote is made
inert (runner/text.py) and every text fits GitHub's limits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from app.budget import format_usd
from app.store import Task
from runner.github import GitHubError, RepoClient
from runner.pull_request import shown_path
from runner.status import PROGRESS_INTERVAL, StatusComment, format_duration, shown_tool
from runner.text import DEFAULT_GITHUB_HOST, code_span, fit_body, neutralise, short_title

log = logging.getLogger(__name__)

NAME = "async-code"
# GitHub takes 65,535 characters in a check run's title, summary and text each, and counts
# bytes of UTF-8 too: an output of emoji within the character limit is still refused.
OUTPUT_LIMIT = 65_535
TEXT_LIMIT = 60_000  # characters before neutralising, which adds a few
TITLE_LIMIT = 200
FILES_SHOWN = 100
CALLS_SHOWN = 200
# What a check run shows of the agent's answer, and all a Continue task is handed of it: the
# writer who presses Continue has read exactly this much.
ANSWER_SHOWN = 20_000

# GitHub shows at most three; label ≤ 20, description ≤ 40, identifier ≤ 20 characters.
CANCEL = {"label": "Cancel", "description": "Stop this task; nothing is pushed", "identifier": "cancel"}
RETRY = {"label": "Retry", "description": "Run the same request again", "identifier": "retry"}
CONTINUE = {"label": "Continue", "description": "Keep working on the pushed head",
            "identifier": "continue"}


def queued(task: Task, *, head_sha: str, details_url: str | None) -> dict[str, Any]:
    fields = {"name": NAME, "head_sha": head_sha, "external_id": task.id, "status": "queued",
              "output": {"title": "Queued", "summary": f"Task `{task.id[:8]}` waits for a slot."},
              "actions": [CANCEL]}
    if details_url:
        fields["details_url"] = details_url
    return fields


def in_progress(turns: int, last_tool: str | None, seconds: float) -> dict[str, Any]:
    last_tool = shown_tool(last_tool)  # the model names it: only a plain name is shown
    detail = f"turn {turns}" + (f", last tool `{last_tool}`" if last_tool else "") if turns else "starting"
    return {"status": "in_progress",
            "output": {"title": f"Running: {detail}",
                       "summary": f"Running for {format_duration(seconds)}: {detail}."},
            "actions": [CANCEL]}


def finished(conclusion: str, *, title: str, summary: str, text: str = "",
             actions: list[dict[str, str]] | None = None,
             github_host: str = DEFAULT_GITHUB_HOST) -> dict[str, Any]:
    """A completed check run. `title`, `summary` and `text` may hold untrusted text: they are
    made inert here and cut to GitHub's limits."""
    output = {"title": short_title(neutralise(title, github_host=github_host), TITLE_LIMIT) or conclusion,
              "summary": _fit(neutralise(summary, github_host=github_host))}
    if text:
        output["text"] = _fit(neutralise(text, github_host=github_host))
    return {"status": "completed", "conclusion": conclusion, "output": output,
            "actions": actions if actions is not None else [RETRY]}


def _fit(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """`text` within `limit` characters and `limit` bytes of UTF-8."""
    text = fit_body(text, limit=min(limit, TEXT_LIMIT))
    chars = len(text)
    while len(text.encode()) > limit:
        chars = chars * limit // len(text.encode()) - 16
        text = fit_body(text, limit=max(chars, 0))
    return text


def change_summary(*, files: list[tuple[str, int | None, int | None]], seconds: float, turns: int,
                   tokens: int, answer: str, left_out: int = 0, cost: float | None = None,
                   note: str = "") -> str:
    """What changed (a table of files with +/− lines), how long it took, what it cost, and the
    agent's answer in the room that is left: no answer can push the files out of view."""
    rows = [f"| {_cell(path)} | {'+' + str(added) if added is not None else 'binary'} | "
            f"{'−' + str(deleted) if deleted is not None else ''} |"
            for path, added, deleted in files[:FILES_SHOWN]]
    more = f"\n\n…and {len(files) - FILES_SHOWN} more files." if len(files) > FILES_SHOWN else ""
    table = "| File | Added | Deleted |\n|---|---|---|\n" + "\n".join(rows) + more if files else ""
    left = f"\n\n{left_out:,} path(s) were left out." if left_out else ""
    facts = "\n\n".join(part for part in (table + left, _figures(seconds, turns, tokens, cost)) if part)
    room = TEXT_LIMIT - len(facts) - len(note) - 100
    return "\n\n".join(part for part in (note, _quoted(fit_body(shown_answer(answer),
                                                                 limit=max(room, 0))), facts) if part)


def shown_answer(answer: str) -> str:
    """The part of the agent's answer a check run shows, and a Continue task is handed."""
    return fit_body(answer.strip(), limit=ANSWER_SHOWN)


def _cell(path: str) -> str:
    # A table cell ends at "|", even inside a code span, unless it is escaped.
    return code_span(shown_path(path)).replace("|", "\\|")


def answer_summary(answer: str, *, seconds: float, turns: int, tokens: int,
                   cost: float | None = None, note: str = "") -> str:
    return "\n\n".join(part for part in (note, _quoted(shown_answer(answer) or "(no answer)"),
                                         _figures(seconds, turns, tokens, cost)) if part)


def transcript_excerpt(transcript: list[dict[str, Any]] | None) -> str:
    """The tool calls the agent made and how each ended, one line each."""
    calls: dict[str, str] = {}
    lines: list[str] = []
    for message in transcript or []:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use":
                calls[str(block.get("id"))] = _describe_call(block)
            elif block.get("type") == "tool_result":
                call = calls.pop(str(block.get("tool_use_id")), "a tool call")
                lines.append(f"- {call}: {_ending(block)}")
    if not lines:
        return ""
    shown = lines[:CALLS_SHOWN]
    if len(lines) > CALLS_SHOWN:
        shown.append(f"- …{len(lines) - CALLS_SHOWN} more")
    return "Tool calls:\n\n" + "\n".join(shown)


def _describe_call(block: dict[str, Any]) -> str:
    """One line: the model chose every part of it, so none may hold a line break."""
    name, arguments = shown_tool(str(block.get("name"))), block.get("input") or {}
    if name == "bash" and isinstance(arguments, dict):
        return f"`bash` {code_span(_one_line(str(arguments.get('command', '')), 200))}"
    if isinstance(arguments, dict) and "path" in arguments:
        return (f"`{name}` {code_span(_one_line(str(arguments.get('command', '')), 20))} "
                f"{code_span(shown_path(_one_line(str(arguments['path']), 200)))}")
    return f"`{name}`"


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def _ending(block: dict[str, Any]) -> str:
    content = block.get("content")
    first = content.split("\n", 1)[0] if isinstance(content, str) else ""
    if first.startswith("exit code "):
        return first
    return "error" if block.get("is_error") else "ok"


def _quoted(text: str) -> str:
    text = text.strip()
    return "\n".join("> " + line for line in text.splitlines()) if text else ""


def _figures(seconds: float, turns: int, tokens: int, cost: float | None = None) -> str:
    return (f"{format_duration(seconds)} · {turns} turn{'s' if turns != 1 else ''} · {tokens:,} tokens"
            + (f" · {format_usd(cost)}" if cost is not None else ""))


def with_note(fields: dict[str, Any], note: str) -> dict[str, Any]:
    """A finished check run's fields with a line written by async-code itself (a link it made)
    at the end of the summary, within GitHub's limit."""
    output = fields.get("output")
    if not note or not isinstance(output, dict) or "summary" not in output:
        return fields
    room = OUTPUT_LIMIT - len(note.encode()) - 2
    return {**fields, "output": {**output, "summary": _fit(output["summary"], room) + "\n\n" + note}}


class CheckRun:
    """One task's check run: throttled progress, final updates that always go through. GitHub
    failing here never fails the task: the status comment says the same. A final update's
    summary gains `note` (the link to the task's full transcript, once there is one)."""

    def __init__(self, client: RepoClient, task: Task, check_run_id: int | None, *,
                 interval: float = PROGRESS_INTERVAL, clock: Callable[[], float] | None = None,
                 before_edit: Callable[[], None] = lambda: None):
        self._client, self._task = client, task
        self._before_edit = before_edit  # raises when this attempt may no longer edit it
        self.check_run_id = check_run_id
        kwargs = {"interval": interval} | ({"clock": clock} if clock else {})
        self._updates = (StatusComment(client.update_check_run, check_run_id, **kwargs)
                         if check_run_id else None)
        self.note = ""

    def progress(self, fields: dict[str, Any]) -> None:
        self._send(lambda: self._updates.progress(fields))

    def final(self, fields: dict[str, Any]) -> None:
        self._send(lambda: self._updates.final(with_note(fields, self.note)))

    def _send(self, update: Callable[[], Any]) -> None:
        if self._updates is None:
            return
        self._before_edit()
        try:
            update()
        except GitHubError as error:
            log.warning("task %s: could not update check run %s: %s", self._task.id,
                        self.check_run_id, error)


def create(client: RepoClient, task: Task, fields: dict[str, Any]) -> int | None:
    """A new check run; None (and a log line) when GitHub refuses it."""
    try:
        return client.create_check_run(fields)
    except GitHubError as error:
        log.warning("task %s: could not create its check run: %s", task.id, error)
        return None
