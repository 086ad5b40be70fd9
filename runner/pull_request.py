"""What the pull request and its commit say. Pure functions: the agent's text is untrusted."""

from __future__ import annotations

from runner.text import fit_body, neutralise, short_title

TITLE_LIMIT = 72


def branch_name(number: int, task_id: str) -> str:
    return f"async-code/{number}-{task_id[:8]}"


def title(answer: str, instruction: str) -> str:
    """The agent's summary line, else the instruction, at most 72 characters, inert."""
    # Neutralise first: the zero-width spaces it adds count towards the limit.
    return (short_title(neutralise(answer), TITLE_LIMIT)
            or short_title(neutralise(instruction), TITLE_LIMIT) or "Changes requested by comment")


def _details(answer: str) -> str:
    lines = answer.strip().splitlines()
    return "\n".join(lines[1:]).strip() if len(lines) > 1 else ""


def body(*, answer: str, instruction: str, number: int, requested_by: str, task_id: str,
         files: list[tuple[str, int | None, int | None]]) -> str:
    """Summary, the files changed, `Fixes #N`, who asked, the task id; under GitHub's limit."""
    file_lines = "\n".join(
        f"- `{path}` (+{added if added is not None else '?'} −{deleted if deleted is not None else '?'})"
        for path, added, deleted in files)
    request = "\n".join("> " + line for line in instruction.strip().splitlines())
    tail = (f"\n\n### Files changed\n{file_lines}\n\nFixes #{number}\n\n"
            f"Requested by @{requested_by} in #{number}:\n\n{neutralise(request)}\n\n"
            f"<sub>async-code task `{task_id}`</sub>")
    summary = neutralise(_details(answer) or short_title(answer, 10_000) or "No summary was given.")
    # Cut the agent's text, never the part that links the issue and names the requester.
    return fit_body("### Summary\n" + summary, limit=max(1_000, 65_000 - len(tail))) + tail


def commit_message(title_line: str, *, number: int, task_id: str, requested_by: str,
                   requested_by_id: int | None) -> str:
    trailer = ""
    if requested_by_id:
        trailer = (f"\n\nCo-authored-by: {requested_by} "
                   f"<{requested_by_id}+{requested_by}@users.noreply.github.com>")
    return f"{title_line}\n\nRequested in #{number} (async-code task {task_id}).{trailer}\n"
