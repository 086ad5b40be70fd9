import pytest

from runner.text import GITHUB_BODY_LIMIT, fit_body, neutralise, short_title

Z = "\u200b"  # zero-width space

NEUTRALISE_CASES = [
    pytest.param("@octocat please look", f"@{Z}octocat please look", id="mention-at-start"),
    pytest.param("thanks @octocat", f"thanks @{Z}octocat", id="mention-mid-line"),
    pytest.param("line one\n@octocat", f"line one\n@{Z}octocat", id="mention-at-line-start"),
    pytest.param("(@octocat)", f"(@{Z}octocat)", id="mention-in-parentheses"),
    pytest.param("ok,@octocat.", f"ok,@{Z}octocat.", id="mention-after-punctuation"),
    pytest.param("cc @a @b", f"cc @{Z}a @{Z}b", id="several-mentions"),
    pytest.param("@org/team-name", f"@{Z}org/team-name", id="team-mention"),
    pytest.param("**@octocat**", f"**@{Z}octocat**", id="mention-in-emphasis"),
    pytest.param("`@octocat`", f"`@{Z}octocat`", id="mention-in-inline-code-too"),
    pytest.param("é@octocat", f"é@{Z}octocat", id="non-ascii-letter-does-not-shield"),
    pytest.param("write to a@b.com", "write to a@b.com", id="email-untouched"),
    pytest.param("first.last+tag@example.org", "first.last+tag@example.org", id="email-with-dots"),
    pytest.param("npm i left-pad@1.3.0", "npm i left-pad@1.3.0", id="package-version-untouched"),
    pytest.param("icon@2x.png", "icon@2x.png", id="at-inside-word-untouched"),
    pytest.param("a lone @ sign", "a lone @ sign", id="bare-at-untouched"),
    pytest.param("@-dash @_x", "@-dash @_x", id="at-before-non-login-character"),
    pytest.param("see #12", "see #12", id="plain-reference-untouched"),
    pytest.param("Fixes #", "Fixes #", id="keyword-without-number-untouched"),
    pytest.param("Fixes #abc", "Fixes #abc", id="keyword-with-non-number-untouched"),
    pytest.param("this fixes the bug", "this fixes the bug", id="keyword-without-reference"),
    pytest.param("prefixes #12", "prefixes #12", id="keyword-inside-word-untouched"),
    pytest.param("Close #1", f"C{Z}lose #1", id="close"),
    pytest.param("closes #1", f"c{Z}loses #1", id="closes"),
    pytest.param("closed #1", f"c{Z}losed #1", id="closed"),
    pytest.param("fix #1", f"f{Z}ix #1", id="fix"),
    pytest.param("Fixes #12", f"F{Z}ixes #12", id="fixes"),
    pytest.param("fixed #1", f"f{Z}ixed #1", id="fixed"),
    pytest.param("resolve #1", f"r{Z}esolve #1", id="resolve"),
    pytest.param("Resolves #1", f"R{Z}esolves #1", id="resolves"),
    pytest.param("RESOLVED #1", f"R{Z}ESOLVED #1", id="resolved-upper-case"),
    pytest.param("Fixes: #12", f"F{Z}ixes: #12", id="keyword-with-colon"),
    pytest.param("fixes\t #12", f"f{Z}ixes\t #12", id="keyword-then-mixed-whitespace"),
    pytest.param("fixes octo/repo#12", f"f{Z}ixes octo/repo#12", id="cross-repo-reference"),
    pytest.param("fixes GH-12", f"f{Z}ixes GH-12", id="gh-reference"),
    pytest.param(
        "Closes https://github.com/octo/repo/issues/12",
        f"C{Z}loses https://github.com/octo/repo/issues/12",
        id="issue-url-reference",
    ),
    pytest.param(
        "Fixes #1, fixes #2.", f"F{Z}ixes #1, f{Z}ixes #2.", id="several-closing-references"
    ),
    pytest.param(
        "@octocat: this fixes #3",
        f"@{Z}octocat: this f{Z}ixes #3",
        id="mention-and-closing-reference",
    ),
    pytest.param("", "", id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), NEUTRALISE_CASES)
def test_neutralise(text, expected):
    assert neutralise(text) == expected


@pytest.mark.parametrize(("text", "expected"), NEUTRALISE_CASES)
def test_neutralise_is_idempotent(text, expected):
    assert neutralise(neutralise(text)) == neutralise(text)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("", 10, "", id="empty"),
        pytest.param("abcdefghij", 10, "abcdefghij", id="exactly-limit-unchanged"),
        pytest.param("abcdefghijk", 10, "abcdef[..]", id="limit-plus-one-cut-with-marker"),
        pytest.param("abcdefghijk", 4, "[..]", id="room-for-marker-only"),
        pytest.param("abcdefghijk", 3, "abc", id="marker-does-not-fit-hard-cut"),
        pytest.param("abcdefghijk", 0, "", id="zero-limit"),
        pytest.param("abcde\r\nfghij", 10, "abcde[..]", id="cut-never-splits-crlf"),
        pytest.param("abcdef\r\nghij", 10, "abcdef[..]", id="cut-right-before-crlf"),
    ],
)
def test_fit_body(text, limit, expected):
    assert fit_body(text, limit, marker="[..]") == expected


def test_fit_body_default_limit_and_marker():
    body = fit_body("x" * (GITHUB_BODY_LIMIT + 1))
    assert len(body) == GITHUB_BODY_LIMIT
    assert body.endswith("\n\n…(truncated)")


def test_fit_body_refuses_negative_limit():
    with pytest.raises(ValueError, match="limit"):
        fit_body("text", -1)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("Add retries", 72, "Add retries", id="plain-line"),
        pytest.param("", 72, "", id="empty"),
        pytest.param(" \n\t\n", 72, "", id="only-whitespace"),
        pytest.param("\n\n  Add retries\nDetails", 72, "Add retries", id="first-non-empty-line"),
        pytest.param("## Add retries", 72, "Add retries", id="heading"),
        pytest.param("# Add retries ##", 72, "Add retries", id="heading-with-closing-marks"),
        pytest.param("#\n## \nAdd retries", 72, "Add retries", id="empty-headings-skipped"),
        pytest.param("#12 is flaky", 72, "#12 is flaky", id="issue-reference-is-not-a-heading"),
        pytest.param("- Add retries", 72, "Add retries", id="dash-bullet"),
        pytest.param("* Add retries", 72, "Add retries", id="star-bullet"),
        pytest.param("1. Add retries", 72, "Add retries", id="numbered-item"),
        pytest.param("Add   retries\tnow", 72, "Add retries now", id="whitespace-collapsed"),
        pytest.param("Add retries\r\nmore", 72, "Add retries", id="windows-line-endings"),
        pytest.param("Add retries to it", 17, "Add retries to it", id="exactly-limit"),
        pytest.param("Add retries to it", 16, "Add retries to…", id="cut-at-word-boundary"),
        pytest.param("Add retries now", 12, "Add retries…", id="cut-falls-on-boundary"),
        pytest.param("Supercalifragilistic", 10, "Supercali…", id="single-long-word-hard-cut"),
        pytest.param("Add retries", 1, "…", id="limit-one"),
    ],
)
def test_short_title(text, limit, expected):
    title = short_title(text, limit)
    assert title == expected
    assert len(title) <= limit


def test_short_title_default_limit():
    title = short_title("word " * 40)
    assert len(title) <= 72
    assert title.endswith("word…")
