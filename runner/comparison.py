"""What a side-by-side run says on its issue: progress while its agents work, and the one
comparison comment when the last has ended.

Pure functions of the member tasks as the store holds them. Nothing an agent wrote is shown but
numbers the runner counted and an agent's name from the allow-list: a failed member's reason
(which may quote the agent or the model API) is made inert like every status comment's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.budget import format_usd
from app.store import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, Task
from runner.status import footer as _footer, format_duration, shown_tool
from runner.text import DEFAULT_GITHUB_HOST, code_span, fenced, fit_body, neutralise

# How the repository's `test` commands went on a member's branch (Task.test_result).
TESTS_PASSED, TESTS_FAILED, TESTS_TIMED_OUT = "passed", "failed", "timed out"
TESTS_NOT_RUN = "not run"  # followed by ": why"
REASON_SHOWN = 300  # characters of a failed member's reason
OUTPUT_SHOWN = 1_500  # characters of the end of what a failing test printed


@dataclass(frozen=True)
class Progress:
    """What a running member last reported."""

    turns: int = 0
    tool: str | None = None


def running(task_id: str, members: list[Task], progress: dict[str, Progress]) -> str:
    """The request's status comment while its members run: one line per agent."""
    lines = [f"⚙️ **async-code** running {len(members)} agents side by side; a comparison "
             "follows when the last has finished.", ""]
    for member in members:
        lines.append(f"- {code_span(member.agent or '?')}: {_state(member, progress.get(member.id))}")
    return "\n".join(lines) + _footer(task_id)


def _state(member: Task, progress: Progress | None) -> str:
    if member.status == RUNNING:
        if progress is None or not progress.turns:
            return "starting"
        tool = shown_tool(progress.tool)
        return f"turn {progress.turns}" + (f", last tool `{tool}`" if tool else "")
    if member.status == PENDING:
        return "waiting"
    return _outcome(member)


def _outcome(member: Task) -> str:
    """How a member ended, in a few words; its pull request's link goes with it."""
    outcome = _outcome_words(member)
    if member.pr_number and member.pr_url:
        outcome += f": [#{member.pr_number}]({member.pr_url})"
    return outcome


def _outcome_words(member: Task) -> str:
    if member.status == COMPLETED and member.pr_number:
        return "⏸️ stopped at budget" if member.stop_reason == "budget" else "✅ opened"
    if member.status == COMPLETED:
        return "💬 no changes"
    if member.status == CANCELLED:
        return "🛑 cancelled"
    return "❌ failed"


def comment(task_id: str, members: list[Task], *, transcripts: dict[str, str], mention: str,
            github_host: str = DEFAULT_GITHUB_HOST) -> str:
    """The comparison: a row per agent, the failures' reasons, and how to keep one.
    `transcripts` maps a member's id to a signed link to its full transcript."""
    rows = ["| Agent | Outcome | Files | Lines | Tests | Turns | Time | Tokens | Cost | Links |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for member in members:
        files, added, deleted = _changed(member)
        links = []
        if member.pr_url and member.pr_number:
            links.append(f"[#{member.pr_number}]({member.pr_url})")
        if member.id in transcripts:
            links.append(f"[transcript]({transcripts[member.id]})")
        rows.append(" | ".join([
            f"| {code_span(member.agent or '?')}"
            + (f" {code_span(member.agent_version)}" if member.agent_version else ""),
            _outcome_words(member),
            f"{files}", f"+{added:,} −{deleted:,}", _tests(member.test_result),
            f"{member.turns}" if member.turns is not None else "—",
            _duration(member), f"{_tokens(member):,}",
            format_usd(member.cost_usd) if member.cost_usd is not None else "—",
            " · ".join(links) or "—"]) + " |")
    failures = [f"- {code_span(member.agent or '?')}: "
                + neutralise(_short(member.error or "no reason was recorded"), github_host=github_host)
                for member in members if member.status == FAILED]
    # Written by the runner (runner/branch_tests.py), never by an agent; inert all the same.
    not_tested = [f"- {code_span(member.agent or '?')}: "
                  + neutralise(_short(member.test_result or ""), github_host=github_host)
                  for member in members
                  if (member.test_result or "").startswith(TESTS_NOT_RUN + ":")]
    opened = [member.pr_number for member in members if member.pr_number]
    parts = [f"📊 **async-code** compared {len(members)} agents on this issue, each on a draft "
             "pull request of its own.", "", *rows]
    if failures:
        parts += ["", "Why some failed:", *failures]
    if not_tested:
        parts += ["", "Why some branches were not tested:", *not_tested]
    for member in members:
        if member.test_output and member.test_result in (TESTS_FAILED, TESTS_TIMED_OUT):
            # The tests are the agent's code: what they print is shown as code, nothing more.
            parts += ["", f"<details><summary>What {code_span(member.agent or '?')}'s failing "
                      "test printed, at its end</summary>", "",
                      fenced(_printable(member.test_output[-OUTPUT_SHOWN:])), "", "</details>"]
    if opened:
        parts += ["", f"To keep one, comment `{mention} pick <number>` (as in `{mention} pick "
                  f"{opened[0]}`): that pull request is marked ready for review, and the others "
                  "are closed and their branches deleted."]
    return fit_body("\n".join(parts), limit=60_000) + _footer(task_id) + marker(task_id)


def marker(task_id: str) -> str:
    """Hidden in the comparison comment: how a later attempt finds one an earlier posted."""
    return f"\n<!-- async-code comparison {task_id} -->"


def compared(task_id: str, *, comment_url: str | None, completed: int, total: int,
             table: str = "") -> str:
    """The request's status comment once the comparison is posted; when it could not be,
    the comparison itself (`table`, from `comment`)."""
    head = f"📊 **async-code** ran {total} agents side by side: {completed} of {total} finished."
    if comment_url:
        return f"{head} See [the comparison]({comment_url})." + _footer(task_id)
    body = table.removesuffix(marker(task_id)).removesuffix(_footer(task_id))
    return f"{head} The comparison could not be posted on its own; here it is:\n\n{body}" + _footer(task_id)


def _printable(text: str) -> str:
    """Output as a code block can show it: control characters other than line ends dropped."""
    return "".join(c for c in text.replace("\r\n", "\n") if c == "\n" or c == "\t" or c.isprintable())


def _tests(result: str | None) -> str:
    if result == TESTS_PASSED:
        return "✅ pass"
    if result == TESTS_FAILED:
        return "❌ fail"
    if result == TESTS_TIMED_OUT:
        return "⏱️ timed out"
    if result and result.startswith(TESTS_NOT_RUN):
        return "⚠️ not run"
    return "—"


def _changed(member: Task) -> tuple[int, int, int]:
    files = (member.patches or {}).get("files") if isinstance(member.patches, dict) else None
    if not isinstance(files, list):
        return 0, 0, 0
    added = sum(f.get("added") or 0 for f in files if isinstance(f, dict))
    deleted = sum(f.get("deleted") or 0 for f in files if isinstance(f, dict))
    return len(files), added, deleted


def _tokens(member: Task) -> int:
    return sum(value or 0 for value in (member.input_tokens, member.output_tokens,
                                        member.cache_write_tokens, member.cache_read_tokens))


def _duration(member: Task) -> str:
    if not (member.started_at and member.finished_at):
        return "—"
    seconds = (datetime.fromisoformat(member.finished_at)
               - datetime.fromisoformat(member.started_at)).total_seconds()
    return format_duration(max(0.0, seconds))


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_SHOWN else line[:REASON_SHOWN - 1] + "…"
