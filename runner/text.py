"""Make text written by the agent fit to post on GitHub.

The agent reads issue text anyone can write, so what it writes back is untrusted:
it must not notify people, close issues, or exceed GitHub's size limits.
"""

import re

GITHUB_BODY_LIMIT = 65_536
ZERO_WIDTH_SPACE = "\u200b"

# An @ that starts a word and is followed by a login character is a mention; an @
# inside a word (a@b.com, left-pad@1.3.0) is not. ASCII classes on purpose, so a
# non-ASCII letter before the @ cannot shield a mention. Code is not exempt: a
# disagreement with GitHub's parser about what is code would let a ping through.
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@(?=[A-Za-z0-9])")

_CLOSING_KEYWORD_BEFORE_REFERENCE = re.compile(
    r"(?<![A-Za-z0-9_])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)"
    r":?\s*"
    r"(?=#\d|GH-\d|[\w.-]+/[\w.-]+#\d|https?://[^\s/]+/[\w.-]+/[\w.-]+/issues/\d)",
    re.IGNORECASE,
)

_HEADING_MARK = re.compile(r"^#{1,6}(?=\s|$)")
_HEADING_CLOSING_MARK = re.compile(r"\s+#+$")
_LIST_MARK = re.compile(r"^(?:[-*+]|\d{1,9}[.)])(?=\s|$)")


def neutralise(text: str) -> str:
    """Stop GitHub acting on `text`: no mention pings, no closing keyword closes an issue.

    A zero-width space after each mention's "@" and inside each closing keyword keeps
    the text readable while GitHub no longer recognises either. Idempotent.
    """
    text = _MENTION.sub("@" + ZERO_WIDTH_SPACE, text)
    return _CLOSING_KEYWORD_BEFORE_REFERENCE.sub(
        lambda keyword: keyword[0][0] + ZERO_WIDTH_SPACE + keyword[0][1:], text
    )


def fit_body(
    text: str, limit: int = GITHUB_BODY_LIMIT, marker: str = "\n\n…(truncated)"
) -> str:
    """`text` cut so it is at most `limit` characters, ending with `marker` when cut."""
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    if len(text) <= limit:
        return text
    room = limit - len(marker)
    if room < 0:
        # No room to say it was cut; staying under the limit is the promise that matters.
        return _cut(text, limit)
    return _cut(text, room) + marker


def short_title(text: str, limit: int = 72) -> str:
    """A one-line title from the first line of `text` with words in it, at most `limit` long."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    for line in text.splitlines():
        title = _without_markdown_marks(line.strip())
        if title:
            return _shortened(title, limit)
    return ""


def _cut(text: str, length: int) -> str:
    # Never leave half of a "\r\n" behind.
    if 0 < length < len(text) and text[length - 1] == "\r" and text[length] == "\n":
        length -= 1
    return text[:length]


def _without_markdown_marks(line: str) -> str:
    if _HEADING_MARK.match(line):
        line = _HEADING_CLOSING_MARK.sub("", _HEADING_MARK.sub("", line))
    line = _LIST_MARK.sub("", line.strip())
    return " ".join(line.split())


def _shortened(title: str, limit: int) -> str:
    if len(title) <= limit:
        return title
    room = limit - len("…")
    head = title[:room]
    # Back up to the last word boundary unless the cut already falls on one;
    # a single word longer than the limit is cut where it must be.
    if title[room] != " " and " " in head:
        head = head[: head.rindex(" ")]
    return head.rstrip() + "…"
