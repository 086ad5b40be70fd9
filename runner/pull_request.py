"""What the pull request and its commit say. Pure functions: the agent's text is untrusted."""

from __future__ import annotations

import re

from runner.text import (DEFAULT_GITHUB_HOST, GITHUB_BODY_LIMIT, code_span, fit_body, neutralise,
                         short_title)

TITLE_LIMIT = 72
# Caps on the parts of the body that are not the summary, so the summary always has room
# and the lines that link the issue and name the requester are never cut.
FILES_SHOWN = 100
FILES_LIMIT = 20_000
LEFT_OUT_SHOWN = 50
PATH_SHOWN = 300
INSTRUCTION_LIMIT = 4_000

# Line breaks would end the list item and let a file name start lines of its own; the
# other control characters and bidirectional overrides would make the name display
# as something it is not.
_UNSHOWABLE_IN_PATH = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def branch_name(number: int, task_id: str, prefix: str = "async-code/", *,
                agent: str | None = None) -> str:
    """`<prefix><issue>-<id8>`; a side-by-side member's also names its agent."""
    if agent is not None:
        return f"{prefix}{number}-{agent}-{task_id[:8]}"
    return f"{prefix}{number}-{task_id[:8]}"


def title(answer: str, instruction: str, *, github_host: str = DEFAULT_GITHUB_HOST) -> str:
    """The agent's summary line, else the instruction, at most 72 characters, inert."""
    # Neutralise first: the zero-width spaces it adds count towards the limit.
    return (short_title(neutralise(answer, github_host=github_host), TITLE_LIMIT)
            or short_title(neutralise(instruction, github_host=github_host), TITLE_LIMIT)
            or "Changes requested by comment")


def _details(answer: str) -> str:
    lines = answer.strip().splitlines()
    return "\n".join(lines[1:]).strip() if len(lines) > 1 else ""


def shown_path(path: str) -> str:
    """A file name as one line that shows what it is: no control or direction characters."""
    path = _UNSHOWABLE_IN_PATH.sub("\ufffd", path)
    if len(path) <= PATH_SHOWN:
        return path
    half = (PATH_SHOWN - 1) // 2
    return path[:half] + "…" + path[-half:]


def _file_list(files: list[tuple[str, int | None, int | None]], github_host: str) -> str:
    lines: list[str] = []
    used = 0
    for path, added, deleted in files[:FILES_SHOWN]:
        # Neutralised even inside code: a disagreement with GitHub about where the span
        # ends must not turn a file name into a mention or a closing keyword.
        line = neutralise(f"- {code_span(shown_path(path))} "
                          f"(+{added if added is not None else '?'} "
                          f"−{deleted if deleted is not None else '?'})", github_host=github_host)
        if used + len(line) + 1 > FILES_LIMIT:
            break
        lines.append(line)
        used += len(line) + 1
    if hidden := len(files) - len(lines):
        lines.append(f"- … and {hidden:,} more file{'s' if hidden != 1 else ''}")
    return "\n".join(lines)


def left_out_list(left_out: list[tuple[str, str]], total: int, *,
                  github_host: str = DEFAULT_GITHUB_HOST) -> str:
    """What the agent wrote that is not proposed, one line each, with the reason."""
    lines = [neutralise(f"- {code_span(shown_path(path))}: {reason}", github_host=github_host)
             for path, reason in left_out[:LEFT_OUT_SHOWN]]
    if hidden := total - len(lines):
        lines.append(f"- … and {hidden:,} more")
    return "\n".join(lines)


def _left_out_section(left_out: list[tuple[str, str]], total: int, github_host: str) -> str:
    if not total:
        return ""
    return ("### Left out\nThe agent wrote these, but they are not part of this pull request:\n"
            f"{left_out_list(left_out, total, github_host=github_host)}\n\n")


def body(*, answer: str, instruction: str, number: int, requested_by: str, task_id: str,
         files: list[tuple[str, int | None, int | None]],
         left_out: list[tuple[str, str]] = (), left_out_count: int = 0,
         github_host: str = DEFAULT_GITHUB_HOST) -> str:
    """`Fixes #N`, who asked, the files changed and left out, the task id, the agent's summary.

    The agent's text comes last and gets exactly the room left under GitHub's limit: nothing
    it writes (an unclosed code fence, say) can swallow the link to the issue, and cutting it
    never cuts that link or the requester.
    """
    request = "\n".join("> " + line for line in instruction.strip().splitlines())
    head = (f"Fixes #{number}\n\n"
            f"Requested by @{requested_by} in #{number}:\n\n"
            f"{fit_body(neutralise(request, github_host=github_host), INSTRUCTION_LIMIT)}\n\n"
            f"### Files changed\n{_file_list(files, github_host)}\n\n"
            f"{_left_out_section(list(left_out), left_out_count, github_host)}"
            f"<sub>{_body_mark(task_id)}</sub>\n\n### Summary\n")
    summary = neutralise(_details(answer) or short_title(answer, 10_000) or "No summary was given.",
                         github_host=github_host)
    return head + fit_body(summary, limit=max(0, GITHUB_BODY_LIMIT - len(head)))


def commit_message(title_line: str, *, number: int, task_id: str, requested_by: str,
                   requested_by_id: int | None, github_host: str = DEFAULT_GITHUB_HOST) -> str:
    # One line, since anything after a line break would read as the message's body or
    # trailers; inert, since a closing keyword in a commit closes the issue on merge.
    first_line = neutralise(" ".join(title_line.split()), github_host=github_host)
    trailer = ""
    if requested_by_id:
        trailer = (f"\n\nCo-authored-by: {requested_by} "
                   f"<{requested_by_id}+{requested_by}@users.noreply.github.com>")
    return f"{first_line}\n\nRequested in #{number} {_commit_mark(task_id)}.{trailer}\n"


def _body_mark(task_id: str) -> str:
    return f"async-code task `{task_id}`"


def _commit_mark(task_id: str) -> str:
    return f"(async-code task {task_id})"


def opened_by_task(pull_body: str | None, task_id: str) -> bool:
    """Whether a pull request's body is the one `body` wrote for this task: a re-attempt finds
    the pull request an earlier attempt opened by it."""
    return _body_mark(task_id) in (pull_body or "")
