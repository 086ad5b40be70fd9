"""Pure decisions of the runner: who may run a task, what the comments and the PR say."""

from __future__ import annotations

import pytest

from app.store import Task
from runner import pull_request, status
from runner.acknowledge import Admission, admit, refusal


@pytest.mark.parametrize(
    "permission, instruction, queued, expected",
    [
        ("admin", "do it", 0, Admission.ACCEPT),
        ("maintain", "do it", 0, Admission.ACCEPT),
        ("write", "do it", 9, Admission.ACCEPT),
        ("triage", "do it", 0, Admission.NOT_ALLOWED),
        ("read", "do it", 0, Admission.NOT_ALLOWED),
        ("none", "do it", 0, Admission.NOT_ALLOWED),
        ("", "do it", 0, Admission.NOT_ALLOWED),
        ("Admin", "do it", 0, Admission.NOT_ALLOWED),  # only GitHub's exact words count
        ("read", "", 0, Admission.NOT_ALLOWED),  # a reader gets the refusal, not the usage
        ("write", "", 0, Admission.NO_INSTRUCTION),
        ("write", "   \n ", 0, Admission.NO_INSTRUCTION),
        ("write", "do it", 10, Admission.QUEUE_FULL),
        ("admin", "do it", 11, Admission.QUEUE_FULL),
    ],
)
def test_admission(permission, instruction, queued, expected):
    assert admit(permission, instruction, queued, max_queue=10) is expected


def task(**changes):
    values = dict(id="0123456789abcdef0123456789abcdef", delivery_guid="g", status="pending",
                  trigger="comment", repo="acme/widgets", installation_id=1, number=7, comment_id=3,
                  instruction="add --version", requested_by="alice", requested_by_id=99,
                  created_at="2026-01-01T00:00:00+00:00")
    return Task(**{**values, **changes})


def test_refusals_address_the_requester_and_explain():
    assert "write access" in refusal(Admission.NOT_ALLOWED, task(), "async-code", 10)
    usage = refusal(Admission.NO_INSTRUCTION, task(), "async-code", 10)
    assert "@async-code make the CLI" in usage and usage.startswith("@alice")
    assert "10 tasks" in refusal(Admission.QUEUE_FULL, task(), "async-code", 10)


def test_status_bodies():
    tid = task().id
    assert "queued (position 3)" in status.queued(tid, 3)
    assert "running" in status.running(tid) and "turn 4, last tool `bash`" in status.running(tid, 4, "bash")
    done = status.done(tid, pr_number=101, pr_url="http://x/pull/101", files_changed=1, seconds=125,
                       tokens=12345)
    assert "done" in done and "[#101](http://x/pull/101)" in done and "1 file changed" in done
    assert "2m 05s" in done and "12,345 tokens" in done
    assert "no changes" in status.no_changes(tid, "It is fine. cc @bob", seconds=3, tokens=10)
    assert "@bob" not in status.no_changes(tid, "cc @bob", seconds=3, tokens=10)
    assert "failed: boom" in status.failed(tid, "boom")
    assert all(tid[:8] in body for body in (status.queued(tid, 1), status.failed(tid, "x")))


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59, "59s"), (60, "1m 00s"), (3599, "59m 59s"),
                                           (3600, "1h 00m"), (7325, "2h 02m")])
def test_format_duration(seconds, text):
    assert status.format_duration(seconds) == text


def test_progress_edits_are_throttled_but_final_edits_always_go_through():
    now = [0.0]
    edits = []
    comment = status.StatusComment(lambda cid, body: edits.append(body), 5, interval=10, clock=lambda: now[0])
    assert comment.progress("turn 1")
    now[0] = 9.9
    assert not comment.progress("turn 2")
    now[0] = 10.0
    assert comment.progress("turn 3")
    now[0] = 10.5
    comment.final("done")
    assert edits == ["turn 1", "turn 3", "done"]


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
                             number=7, requested_by="alice", task_id=task().id,
                             files=[("cli.py", 3, 1), ("logo.png", None, None)])
    assert "Fixes #7" in body and "Requested by @alice" in body and task().id in body
    assert "closes #9" not in body and "@mallory" not in body
    assert "`cli.py` (+3 −1)" in body and "`logo.png` (+? −?)" in body


def test_pull_request_body_fits_github_limit_and_keeps_the_link():
    body = pull_request.body(answer="t\n" + "x" * 200_000, instruction="add it", number=7,
                             requested_by="alice", task_id=task().id, files=[("a", 1, 0)])
    assert len(body) <= 65_536 and "Fixes #7" in body and "truncated" in body


def test_commit_message_credits_the_requester():
    message = pull_request.commit_message("Add flag", number=7, task_id="t1", requested_by="alice",
                                          requested_by_id=99)
    assert message.startswith("Add flag\n\n")
    assert message.rstrip().endswith("Co-authored-by: alice <99+alice@users.noreply.github.com>")


def test_branch_name():
    assert pull_request.branch_name(7, task().id) == "async-code/7-01234567"


@pytest.mark.parametrize(
    "claimed_by, alive, expected",
    [
        (None, True, True),
        ("here:123", False, True),  # the process that claimed it is gone
        ("here:123", True, False),  # another live process on this host runs it
        ("here:4242", True, True),  # our own pid: a restarted container reusing it
        ("elsewhere:123", False, False),  # another host's task is not ours to judge
        ("here:not-a-pid", False, False),
    ],
)
def test_which_running_tasks_a_restart_recovers(claimed_by, alive, expected):
    from runner.recovery import is_orphaned

    assert is_orphaned(task(claimed_by=claimed_by), host="here", own_pid=4242,
                       alive=lambda pid: alive) is expected
