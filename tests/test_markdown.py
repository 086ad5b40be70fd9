"""Quoting a person's text: GitHub shows it as written, on one line, and nothing in it acts."""

from __future__ import annotations

import html
import re

import pytest

from app.markdown import code_span, quoted
from tests.github_rendering import findings, render

CASES = [
    "plain", "`", "``", "a`b", "`leading", "trailing`", " padded ", "``x``", " ` ",
    "@octocat", "[x](https://evil.example)", "![i](https://evil.example/i.png)", "<b>bold</b>",
    "**strong**", "a\\`b", "|table|cell|",
]


def shown(markdown: str) -> str:
    """The text inside the one code element GitHub renders for `markdown`."""
    [inner] = re.findall(r"<code>(.*?)</code>", render(markdown), flags=re.S)
    return html.unescape(inner)


@pytest.mark.parametrize("text", CASES)
def test_a_code_span_shows_the_text_exactly_and_nothing_in_it_acts(text):
    assert shown(code_span(text)) == text
    assert findings(render(code_span(text))) == []


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("short", 10, "short"),
    ("x" * 11, 10, "x" * 9 + "…"),
    ("line\nbreak", 20, "line\ufffdbreak"),
    ("bidi\u202eevil", 20, "bidi\ufffdevil"),
    ("nul\x00", 20, "nul\ufffd"),
    ("sep\u2028ar", 20, "sep\ufffdar"),
])
def test_quoted_text_is_cut_and_kept_on_one_line(text, limit, expected):
    assert shown(quoted(text, limit)) == expected
