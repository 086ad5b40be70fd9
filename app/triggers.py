"""Decide whether an issue comment addresses the app, and what it asks for.

Comment bodies are GitHub-flavoured Markdown. Only a line a reader would see as
someone talking to the app counts: a line that starts with the mention, outside
code, raw HTML blocks, HTML comments and quotes. Quoting or documenting a command
must not run it.
"""

import re
from typing import NamedTuple

# Four spaces (or a tab) of indent make an indented code block, so at most three.
_FENCE_OPEN = re.compile(r"^ {0,3}(?P<run>`{3,}|~{3,})(?P<info>.*)$")
_FENCE_CLOSE = re.compile(r"^[ \t]*(?P<run>`{3,}|~{3,})[ \t]*$")
_BLOCK_QUOTE = re.compile(r"^ {0,3}>")
_LIST_MARKER = re.compile(r"[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
# Elements whose content GitHub shows as code or not at all, never as Markdown.
_RAW_HTML_OPEN = re.compile(
    r"^ {0,3}<(?P<tag>pre|code|script|style|textarea)(?=[\s>]|$)", re.IGNORECASE | re.ASCII
)
# Single-line approximation of a code span: a backtick run closed by a run of the same length.
_CODE_SPAN = re.compile(r"(?<!`)(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


class _Fence(NamedTuple):
    run: str
    # Column where the enclosing list item's content starts; 0 outside lists.
    item_indent: int


def find_instruction(comment_body: str, slug: str) -> str | None:
    """The instruction a comment gives the app, or None when it does not address it.

    A bare mention gives "". The first trigger line wins; the instruction is the rest
    of that line plus every line after it, verbatim.
    """
    if not slug:
        raise ValueError("slug must be the app's login, e.g. 'async-code'")
    trigger = _trigger_line(slug)
    lines = comment_body.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    open_fence: _Fence | None = None
    raw_html_tag: str | None = None
    in_html_comment = False
    in_quote = False
    for index, line in enumerate(lines):
        if open_fence is not None:
            if not _leaves_list_item(line, open_fence):
                if _closes_fence(line, open_fence):
                    open_fence = None
                continue
            # A line left of the item's content ends the item and its code block,
            # and is read afresh.
            open_fence = None
        if raw_html_tag is not None:
            closed_at = _raw_html_close_end(line, raw_html_tag)
            if closed_at is not None:
                raw_html_tag = None
                in_html_comment = _html_comment_open_at_end(line[closed_at:], inside=False)
            continue
        if in_html_comment:
            in_html_comment = _html_comment_open_at_end(line, inside=True)
            continue

        item_indent, content = _list_item_content(line)
        # A fence or raw HTML block interrupts a quote instead of continuing it lazily.
        open_fence = _fence_opened_by(content, item_indent)
        raw_html_tag = _raw_html_opened_by(content)
        if open_fence is not None or raw_html_tag is not None:
            in_quote = False
            continue

        # A non-blank line straight after a quote is a lazy continuation of it:
        # GitHub renders it inside the quote.
        quoted = bool(_BLOCK_QUOTE.match(content)) or (in_quote and bool(line.strip()))
        in_quote = quoted
        if not quoted:
            # List items never match: the line has to start with the mention.
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
    return re.compile(rf"^ {{0,3}}@{_ascii_caseless(slug)}(?:\s*[:,]|(?=\s)|$)")


def _ascii_caseless(slug: str) -> str:
    """A pattern matching `slug` with ASCII letters in either case and nothing else.

    GitHub logins are ASCII and compared without regard to ASCII case only. re.IGNORECASE
    would use Unicode case folding, where "ſ" (long s) matches "s" and the Kelvin sign
    matches "k": text GitHub shows as no mention at all would trigger work.
    """
    return "".join(f"[{char.lower()}{char.upper()}]" if char.isascii() and char.isalpha()
                   else re.escape(char) for char in slug)


def _list_item_content(line: str) -> tuple[int, str]:
    """The text after any list markers that open the line, and the column it starts at.

    A line without a marker gives (0, line). Nested items ("- 1. text") strip each marker.
    """
    start = 0
    while marker := _LIST_MARKER.match(line, start):
        start = marker.end()
    return _width(line[:start]), line[start:]


def _fence_opened_by(text: str, item_indent: int) -> _Fence | None:
    opening = _FENCE_OPEN.match(text)
    if not opening:
        return None
    run = opening.group("run")
    # A backtick in a backtick fence's info string makes it inline code, not a fence.
    if run[0] == "`" and "`" in opening.group("info"):
        return None
    return _Fence(run, item_indent)


def _leaves_list_item(line: str, fence: _Fence) -> bool:
    # Code is not a paragraph, so there is no lazy continuation: any non-blank line
    # indented less than the item's content ends the item.
    return bool(line.strip()) and _indent(line) < fence.item_indent


def _closes_fence(line: str, fence: _Fence) -> bool:
    closing = _FENCE_CLOSE.match(line)
    if not closing or _indent(line) > fence.item_indent + 3:
        return False
    run = closing.group("run")
    return run[0] == fence.run[0] and len(run) >= len(fence.run)


def _raw_html_opened_by(text: str) -> str | None:
    opening = _RAW_HTML_OPEN.match(text)
    if not opening:
        return None
    tag = opening.group("tag").lower()
    if _raw_html_close_end(text[opening.end():], tag) is not None:
        return None
    return tag


def _raw_html_close_end(line: str, tag: str) -> int | None:
    # ASCII case only, as in HTML: "</ſcript>" (long s) does not end a script block.
    closing = re.search(rf"</{tag}\s*>", line, re.IGNORECASE | re.ASCII)
    return closing.end() if closing else None


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


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip(" "))


def _width(text: str) -> int:
    # Markdown tab stops are four columns apart.
    return len(text.expandtabs(4))


def _instruction(rest_of_trigger_line: str, following_lines: list[str]) -> str:
    text = "\n".join([rest_of_trigger_line.strip(), *following_lines]).rstrip()
    # A mention on a line of its own introduces the instruction below it; drop only
    # the blank lead-in so an indented first line keeps its indent.
    return _LEADING_BLANK_LINES.sub("", text)
