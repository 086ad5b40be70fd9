"""The issue text the model gets: exactly what GitHub shows a reader, in plain text."""

from __future__ import annotations

import pytest

from runner.shown_text import shown_line, shown_text


@pytest.mark.parametrize(
    ("markdown", "shown"),
    [
        pytest.param("Plain words.", "Plain words.", id="paragraph"),
        pytest.param("one\ntwo\n\nthree", "one\ntwo\n\nthree", id="lines-and-paragraphs"),
        pytest.param("**bold** _em_ ~~gone~~", "bold em gone", id="emphasis-marks-go"),
        pytest.param("a <!-- note --> b", "a  b", id="inline-comment-goes"),
        pytest.param("[docs](https://example.org \"t\")", "docs", id="link-keeps-its-text"),
        pytest.param("see https://example.org", "see https://example.org", id="bare-url-is-text"),
        pytest.param("![diagram](a.png)", "[image]", id="image"),
        pytest.param("&#64;octocat &lt;b&gt;", "@octocat <b>", id="references-decoded-as-shown"),
        pytest.param("<script>alert(1)</script>", "<script>alert(1)</script>",
                     id="filtered-tag-is-shown-as-text"),
        pytest.param("<textarea>x</textarea>", "<textarea>x</textarea>", id="filtered-textarea"),
        pytest.param("<div hidden>shown</div>", "shown", id="hidden-attribute-is-dropped-by-github"),
        pytest.param("<details><summary>More</summary>\n\ninside\n</details>", "More\n\ninside",
                     id="collapsed-details-are-one-click-away"),
        pytest.param("`<!-- kept -->`", "`<!-- kept -->`", id="code-span-verbatim"),
        pytest.param("```py\n<!-- kept -->\n[//]: # (kept)\n```", "```py\n<!-- kept -->\n[//]: # (kept)\n```",
                     id="code-block-verbatim"),
        pytest.param("````\n```\nx\n```\n````", "````\n```\nx\n```\n````", id="code-with-fences-inside"),
        pytest.param("# Title\n\ntext", "# Title\n\ntext", id="heading"),
        pytest.param("- one\n- two\n\n3. three\n4. four", "- one\n- two\n\n3. three\n4. four",
                     id="lists"),
        pytest.param("- [ ] todo\n- [x] done", "- [ ] todo\n- [x] done", id="task-list"),
        pytest.param("> quoted\n> more", "> quoted\n> more", id="quote"),
        pytest.param("| a | b |\n|---|---|\n| 1 | 2 |", "| a | b |\n| 1 | 2 |", id="table"),
        pytest.param("", "", id="empty"),
    ],
)
def test_shown_text(markdown, shown):
    assert shown_text(markdown) == shown


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        pytest.param("Fix the CLI", "Fix the CLI", id="plain"),
        pytest.param("  Fix\n the\tCLI ", "Fix the CLI", id="whitespace-collapsed"),
        pytest.param("<!-- x --> `code`", "<!-- x --> `code`", id="titles-are-not-markdown"),
        pytest.param("Fix\u200b the\u202e CLI\U000e0041", "Fix the CLI", id="invisible-characters-go"),
    ],
)
def test_shown_line(title, shown):
    assert shown_line(title) == shown
