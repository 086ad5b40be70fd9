"""Pure decisions of the runner: who may run a task, what its status comments say."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.store import Task
from runner import status
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
    assert "@bob" not in status.failed(tid, "the model said: ask @bob") and "@\u200bbob" in status.failed(
        tid, "the model said: ask @bob")
    assert len(status.no_changes(tid, "x" * 100_000, seconds=1, tokens=1)) <= 65_536
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


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
RECENT = (NOW - timedelta(minutes=1)).isoformat()
LONG_AGO = (NOW - timedelta(minutes=10)).isoformat()


@pytest.mark.parametrize(
    "claimed_by, alive, starting, heartbeat, expected",
    [
        (None, True, False, RECENT, True),
        ("here:123", False, False, RECENT, True),  # the process that claimed it is gone
        ("here:123", True, False, LONG_AGO, False),  # another live process on this host runs it
        ("here:4242", True, True, RECENT, True),  # our pid at start-up: a restarted container
        ("here:4242", True, False, LONG_AGO, False),  # our pid later: our own task
        ("elsewhere:123", False, False, RECENT, False),  # another host, still beating
        ("elsewhere:123", False, True, LONG_AGO, True),  # another host that stopped beating
        ("elsewhere:123", False, False, None, True),  # never beat, started long ago
    ],
)
def test_which_tasks_count_as_orphaned(claimed_by, alive, starting, heartbeat, expected):
    from runner.recovery import is_orphaned

    held = task(claimed_by=claimed_by, heartbeat_at=heartbeat, started_at=LONG_AGO)
    assert is_orphaned(held, host="here", own_pid=4242, starting=starting, now=NOW,
                       alive=lambda pid: alive) is expected
