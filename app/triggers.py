"""Decide whether an issue comment addresses the app, and what it asks for.

Comment bodies are GitHub-flavoured Markdown. Only a line a reader would see as
someone talking to the app counts: a line that starts with the mention, outside
code, HTML comments and quotes. Quoting or documenting a command must not run it.
"""

import re

# Four spaces (or a tab) of indent make an indented code block, so at most three.
_FENCE_OPEN = re.compile(r"^ {0,3}(?P<run>`{3,}|~{3,})(?P<info>.*)$")
_FENCE_CLOSE = re.compile(r"^ {0,3}(?P<run>`{3,}|~{3,})[ \t]*$")
_BLOCK_QUOTE = re.compile(r"^ {0,3}>")
# Single-line approximation of a code span: a backtick run closed by a run of the same length.
_CODE_SPAN = re.compile(r"(?<!`)(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def find_instruction(comment_body: str, slug: str) -> str | None:
    """The instruction a comment gives the app, or None when it does not address it.

    A bare mention gives "". The first trigger line wins; the instruction is the rest
    of that line plus every line after it, verbatim.
    """
    if not slug:
        raise ValueError("slug must be the app's login, e.g. 'async-code'")
    trigger = _trigger_line(slug)
    lines = comment_body.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    open_fence: str | None = None
    in_html_comment = False
    in_quote = False
    for index, line in enumerate(lines):
        if open_fence is not None:
            if _closes_fence(line, open_fence):
                open_fence = None
            continue
        if in_html_comment:
            in_html_comment = _html_comment_open_at_end(line, inside=True)
            continue

        # A non-blank line straight after a quote is a lazy continuation of it:
        # GitHub renders it inside the quote.
        quoted = bool(_BLOCK_QUOTE.match(line)) or (in_quote and bool(line.strip()))
        in_quote = quoted
        if not quoted:
            open_fence = _fence_opened_by(line)
            if open_fence is not None:
                continue
            mention = trigger.match(line)
            if mention:
                return _instruction(line[mention.end():], lines[index + 1:])
        in_html_comment = _html_comment_open_at_end(line, inside=False)
    return None


def is_bot(user: dict) -> bool:
    """Whether a GitHub user payload belongs to a bot, ours or anyone's."""
    login = user.get("login") or ""
    return user.get("type") == "Bot" or login.endswith("[bot]")


def _trigger_line(slug: str) -> re.Pattern[str]:
    # The mention must be followed by a space, ":", "," or the end of the line:
    # anything else (@async-codex, @async-code-bot, @async-code.io, @async-code/team)
    # is a different account, a team or a domain.
    return re.compile(rf"^ {{0,3}}@{re.escape(slug)}(?:\s*[:,]|(?=\s)|$)", re.IGNORECASE)


def _fence_opened_by(line: str) -> str | None:
    opening = _FENCE_OPEN.match(line)
    if not opening:
        return None
    run = opening.group("run")
    # A backtick in a backtick fence's info string makes it inline code, not a fence.
    if run[0] == "`" and "`" in opening.group("info"):
        return None
    return run


def _closes_fence(line: str, open_fence: str) -> bool:
    closing = _FENCE_CLOSE.match(line)
    if not closing:
        return False
    run = closing.group("run")
    return run[0] == open_fence[0] and len(run) >= len(open_fence)


def _html_comment_open_at_end(line: str, *, inside: bool) -> bool:
    if not inside:
        # "<!--" inside a code span is text, not the start of a comment.
        line = _CODE_SPAN.sub("", line)
    position = 0
    while True:
        if inside:
            end = line.find("-->", position)
            if end < 0:
                return True
            position, inside = end + len("-->"), False
        else:
            start = line.find("<!--", position)
            if start < 0:
                return False
            position, inside = start + len("<!--"), True


def _instruction(rest_of_trigger_line: str, following_lines: list[str]) -> str:
    text = "\n".join([rest_of_trigger_line.strip(), *following_lines]).rstrip()
    # A mention on a line of its own introduces the instruction below it; drop only
    # the blank lead-in so an indented first line keeps its indent.
    return _LEADING_BLANK_LINES.sub("", text)
