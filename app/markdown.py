"""Quoting someone's text in Markdown so that GitHub shows it as written and nothing in it acts:
no mention, link, image or formatting. (A closing keyword still counts in code, but only in a
pull request's body or a commit message: text bound there goes through `runner.text`.)"""

from __future__ import annotations

import re

BACKTICK_RUN = re.compile(r"`+")
# Control characters, line and paragraph separators, and the bidirectional overrides that
# would make a quoted name read differently from what it is.
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def code_span(text: str) -> str:
    """`text` as a Markdown code span that shows it verbatim, whatever backticks it holds."""
    # A code span ends at the first backtick run as long as its opening one, so the fence
    # must be longer than every run inside. CommonMark strips one space from each end
    # when both have one, so padding keeps a leading or trailing backtick or space.
    fence = "`" * (max(map(len, BACKTICK_RUN.findall(text)), default=0) + 1)
    edges = text[:1] + text[-1:]
    pad = " " if text.strip(" ") and ("`" in edges or " " in edges) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def quoted(text: str, limit: int) -> str:
    """A person's `text` as a code span on one line: cut to `limit` characters, with the
    characters that cannot be shown on a line replaced by U+FFFD."""
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return code_span(_UNSHOWABLE.sub("\ufffd", text))
