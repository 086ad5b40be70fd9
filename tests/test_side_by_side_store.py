"""Side-by-side runs in the task stores: a request's member tasks, made and restarted with the
request's attempts, ended with it, cancelled with it, never handed out on their own, and the
one transition that lets the comparison be posted. One contract, kept by the SQLite store and
the PostgreSQL store alike (every test taking `store` runs against both), then each store's own.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from app.postgres_store import ACKNOWLEDGE_JOB, RUN_JOB, PostgresStore
from app.records import MEMBER_LEFT_UNFINISHED
from app.store import (CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, NewTask, Store, Superseded,
                       utcnow)
from tests.test_store import _store_of_an_older_schema, make_store, store  # noqa: F401

REPO = "acme/widgets"
AGENTS = ["claude", "codex", "aider"]



def asked(number=1, comment_id=None, *, agents=None, repo=REPO, label=None, **more) -> NewTask:
    return NewTask(trigger="label" if label else "comment", repo=repo, installation_id=1,
                   number=number, comment_id=None if label else (comment_id or number),
                   instruction="add a --verbose flag", requested_by="alice", requested_by_id=5,
                   issue_title="Verbose", issue_body="please", issue_author="bob",
                   model="claude-haiku-4-5", base_branch="dev", label=label, agents=agents, **more)


def start(store, task_id, worker="host:1"):
    """One more attempt of the task, as the store's runner starts it."""
    if isinstance(store, PostgresStore):
        started = store.start_attempt(task_id, worker)
    else:
        started = store.claim_next(worker)
    assert started is not None and started.id == task_id, started
    return started


def running_request(store, number=1, comment_id=None, *, agents=AGENTS, guid=None, **more):
    """A side-by-side request, acknowledged and running its first attempt."""
    task = store.record_delivery(guid or f"g{number}-{comment_id}", "issue_comment", "created",
                                 asked(number, comment_id, agents=list(agents), **more))
    assert store.mark_queued(task.id, status_comment_id=500 + number, check_run_id=None)
    return start(store, task.id)


def plain_task(store, number=1, comment_id=None, *, acknowledge=True):
    task = store.record_delivery(f"p{number}-{comment_id}", "issue_comment", "created",
                                 asked(number, comment_id))
    if acknowledge:
        store.mark_queued(task.id, status_comment_id=900 + number, check_run_id=None)
    return store.get(task.id)


def finish_member(store, member, status=COMPLETED, **values):
    store.finish(member.id, status, attempt=member.attempt, **values)
    return store.get(member.id)


# Making the members

def test_start_members_makes_one_running_member_per_agent_in_order(store):
    request = running_request(store, label="async-code")
    assert request.agents == AGENTS  # the list is kept as it was asked (a JSON column)

    members = store.start_members(request, AGENTS)

    assert [m.agent for m in members] == AGENTS
    assert len({m.id for m in members} | {request.id}) == len(AGENTS) + 1
    for member in members:
        assert (member.status, member.attempt, member.group_of) == (RUNNING, 1, request.id)
        assert member.draft is True and member.agents is None
        assert (member.comment_id, member.label, member.retry_of) == (None, None, None)
        assert member.acknowledged_at is not None and member.started_at is not None
        assert member.claimed_by == request.claimed_by == "host:1"
        assert member.status_comment_id is None and member.job_id is None
        # It asks what its request asked.
        assert (member.repo, member.number, member.installation_id, member.trigger) == (
            request.repo, request.number, request.installation_id, request.trigger)
        assert (member.instruction, member.model, member.base_branch, member.requested_by) == (
            "add a --verbose flag", "claude-haiku-4-5", "dev", "alice")
        assert (member.issue_title, member.issue_body, member.delivery_guid) == (
            "Verbose", "please", request.delivery_guid)
    assert store.members(request.id) == members
    # The request itself is untouched.
    again = store.get(request.id)
    assert (again.status, again.attempt, again.agents, again.label, again.group_of) == (
        RUNNING, 1, AGENTS, "async-code", None)


def test_members_follow_the_order_of_the_agents_asked(store):
    request = running_request(store)
    members = store.start_members(request, ["codex", "claude"])
    assert [m.agent for m in members] == ["codex", "claude"]
    assert [m.agent for m in store.members(request.id)] == ["codex", "claude"]
    assert store.members(running_request(store, 2).id) == []


def test_a_reattempt_keeps_ended_members_and_restarts_the_others(store):
    request = running_request(store)
    done, unfinished, failed = store.start_members(request, AGENTS)
    done = finish_member(store, done, pr_number=40, commit_sha="a" * 40, branch="b/1")
    failed = finish_member(store, failed, FAILED, error="the model API refused")

    assert store.reattempt(request.id, 1)
    second = start(store, request.id, "host:2")
    assert second.attempt == 2
    again = store.start_members(second, AGENTS)

    assert [m.id for m in again] == [done.id, unfinished.id, failed.id]  # nothing new made
    assert len(store.members(request.id)) == 3
    assert again[0] == done and again[2] == failed  # ended: exactly as they were
    restarted = again[1]
    assert (restarted.status, restarted.attempt, restarted.claimed_by) == (RUNNING, 2, "host:2")
    assert restarted.started_at == unfinished.started_at  # it started with the first attempt
    # The first attempt's member is fenced off; the second's writes land.
    with pytest.raises(Superseded):
        store.update(unfinished.id, attempt=1, commit_sha="b" * 40)
    store.update(unfinished.id, attempt=2, commit_sha="c" * 40)
    assert store.get(unfinished.id).commit_sha == "c" * 40


def test_start_members_for_an_attempt_that_is_not_running_raises_and_makes_nothing(store):
    task = store.record_delivery("g1", "issue_comment", "created", asked(agents=AGENTS))
    store.mark_queued(task.id, status_comment_id=1, check_run_id=None)
    with pytest.raises(Superseded):  # never started
        store.start_members(store.get(task.id), AGENTS)
    first = start(store, task.id)
    assert store.reattempt(task.id, 1)
    with pytest.raises(Superseded):  # given back to wait for its next attempt
        store.start_members(first, AGENTS)
    assert store.members(task.id) == []

    second = start(store, task.id, "host:2")
    with pytest.raises(Superseded):  # superseded by the second attempt
        store.start_members(first, AGENTS)
    assert store.members(task.id) == []
    assert len(store.start_members(second, AGENTS)) == 3

    store.finish(task.id, COMPLETED, attempt=2)
    with pytest.raises(Superseded):  # ended
        store.start_members(second, ["claude", "codex", "gemini"])
    assert [m.agent for m in store.members(task.id)] == AGENTS


# The comparison, once

def test_mark_compared_is_true_once_for_the_running_attempt(store):
    request = running_request(store)
    store.start_members(request, AGENTS)
    assert store.get(request.id).compared_at is None
    assert not store.mark_compared(request.id, 2)  # not an attempt that runs
    assert store.mark_compared(request.id, 1)
    assert store.get(request.id).compared_at is not None
    assert not store.mark_compared(request.id, 1)
    # An attempt that marked it but recorded no comment leaves it to the next attempt (which
    # looks for the comment an earlier one may have posted before posting one).
    assert store.reattempt(request.id, 1)
    assert not store.mark_compared(request.id, 1)
    start(store, request.id, "host:2")
    assert store.mark_compared(request.id, 2)
    assert not store.mark_compared(request.id, 2)
    store.update(request.id, attempt=2, comparison_comment_id=77)
    # Once its comment is recorded, no attempt posts it again.
    assert store.reattempt(request.id, 2)
    start(store, request.id, "host:3")
    assert not store.mark_compared(request.id, 3)


def test_mark_compared_refuses_a_superseded_attempt_and_a_waiting_request(store):
    request = running_request(store)
    assert store.reattempt(request.id, 1)
    assert not store.mark_compared(request.id, 1)  # waiting for its next attempt
    start(store, request.id, "host:2")
    assert not store.mark_compared(request.id, 1)  # superseded
    assert store.get(request.id).compared_at is None
    assert store.mark_compared(request.id, 2)


def test_mark_compared_from_two_threads_at_once_is_true_once(store):
    for number in range(1, 4):
        request = running_request(store, number)
        barrier = threading.Barrier(2)

        def mark(_):
            barrier.wait()
            return store.mark_compared(request.id, 1)

        with ThreadPoolExecutor(2) as pool:
            assert sorted(pool.map(mark, range(2))) == [False, True]


# Ending with the request

def test_finishing_the_request_ends_its_unfinished_members(store):
    request = running_request(store)
    other = running_request(store, 2)  # another run's members are not this one's
    store.start_members(other, ["claude", "codex"])
    completed, running, cancelled, failed = store.start_members(
        request, ["claude", "codex", "aider", "gemini"])
    completed = finish_member(store, completed, pr_number=41)
    cancelled = finish_member(store, cancelled, CANCELLED, error="cancelled by @carol")
    failed = finish_member(store, failed, FAILED, error="its own reason")

    store.update(request.id, attempt=1, output="not finished yet")
    assert store.get(running.id).status == RUNNING  # only a finishing write ends them

    store.finish(request.id, FAILED, attempt=1, error="the worker gave up")

    ended = store.get(running.id)
    assert (ended.status, ended.error) == (FAILED, MEMBER_LEFT_UNFINISHED)
    assert ended.finished_at is not None
    assert store.get(completed.id) == completed
    assert store.get(cancelled.id) == cancelled
    assert store.get(failed.id) == failed
    assert {m.status for m in store.members(other.id)} == {RUNNING}


def test_a_request_failed_while_it_waits_ends_its_waiting_members(store):
    """As recovery fails a request past its attempts, or a removed installation does."""
    request = running_request(store)
    done, waiting = store.start_members(request, ["claude", "codex"])
    done = finish_member(store, done)
    assert store.reattempt(request.id, 1)
    assert store.get(waiting.id).status == PENDING

    store.finish(request.id, FAILED, error="gave up after 3 attempts")

    ended = store.get(waiting.id)
    assert (ended.status, ended.error) == (FAILED, MEMBER_LEFT_UNFINISHED)
    assert store.get(done.id) == done


def test_finishing_a_member_leaves_its_siblings_and_request_running(store):
    request = running_request(store)
    first, second = store.start_members(request, ["claude", "codex"])
    finish_member(store, first, FAILED, error="x")
    assert store.get(second.id).status == RUNNING
    assert store.get(request.id).status == RUNNING


def test_a_reattempt_of_the_request_gives_its_running_members_back_to_wait(store):
    request = running_request(store)
    running, done = store.start_members(request, ["claude", "codex"])
    done = finish_member(store, done)

    assert not store.reattempt(request.id, 2)  # not its attempt: nothing moves
    assert store.get(running.id).status == RUNNING
    assert store.reattempt(request.id, 1)

    waiting = store.get(running.id)
    assert (waiting.status, waiting.claimed_by, waiting.attempt) == (PENDING, None, 1)
    assert store.get(done.id) == done
    assert store.get(request.id).status == PENDING


def test_reattempting_a_member_alone_moves_nothing_else(store):
    request = running_request(store)
    first, second = store.start_members(request, ["claude", "codex"])
    assert store.reattempt(first.id, 1)
    assert store.get(second.id).status == RUNNING and store.get(request.id).status == RUNNING


# Cancelling with the request

def test_cancelling_the_request_asks_its_running_members_to_stop(store):
    request = running_request(store)
    later = plain_task(store, 1, comment_id=77)  # waits behind it on the same issue
    running, done = store.start_members(request, ["claude", "codex"])
    done = finish_member(store, done)

    cancelled, stopping = store.request_cancel(REPO, 1, by="carol", task_id=request.id)

    assert cancelled == []
    assert sorted(t.id for t in stopping) == sorted([request.id, running.id])
    assert store.cancel_requested(running.id) == "carol"
    assert store.cancel_requested(request.id) == "carol"
    assert store.get(running.id).status == RUNNING  # its runner stops it
    assert store.get(done.id) == done
    assert store.get(later.id).status == PENDING and store.cancel_requested(later.id) is None
    assert store.request_cancel(REPO, 1, by="dave", task_id=request.id) == ([], [])


def test_cancelling_a_waiting_request_cancels_its_waiting_members(store):
    request = running_request(store)
    waiting, done = store.start_members(request, ["claude", "codex"])
    done = finish_member(store, done)
    assert store.reattempt(request.id, 1)

    cancelled, stopping = store.request_cancel(REPO, 1, by="carol", task_id=request.id)

    assert stopping == []
    assert sorted(t.id for t in cancelled) == sorted([request.id, waiting.id])
    member = store.get(waiting.id)
    assert (member.status, member.cancel_requested_by, member.error) == (
        CANCELLED, "carol", "cancelled by @carol")
    assert member.finished_at is not None
    assert store.get(done.id) == done


def test_cancelling_another_task_leaves_the_members_alone(store):
    request = running_request(store)
    members = store.start_members(request, ["claude", "codex"])
    other = plain_task(store, 1, comment_id=77)

    cancelled, stopping = store.request_cancel(REPO, 1, by="carol", task_id=other.id)

    assert ([t.id for t in cancelled], stopping) == ([other.id], [])
    assert all(store.cancel_requested(m.id) is None for m in members)


# Members are not work of their own on the issue

def test_work_on_and_ahead_on_same_leave_the_members_out(store):
    request = running_request(store)
    store.start_members(request, ["claude", "codex"])
    later = plain_task(store, 1, comment_id=77, acknowledge=False)

    assert [t.id for t in store.work_on(REPO, 1)] == [request.id, later.id]
    assert [t.id for t in store.ahead_on_same(later.id)] == [request.id]


def test_side_by_side_member_finds_a_members_pull_request_on_that_issue_only(store):
    request = running_request(store, 1)
    claude, codex = store.start_members(request, ["claude", "codex"])
    finish_member(store, claude, pr_number=40)
    finish_member(store, codex, pr_number=41)
    elsewhere = running_request(store, 2)
    [other] = store.start_members(elsewhere, ["claude"])
    finish_member(store, other, pr_number=50)
    # A plain task's pull request is not a side-by-side run's.
    plain = plain_task(store, 1, comment_id=77)
    store.update(plain.id, pr_number=60)

    assert store.side_by_side_member(REPO, 1, 41).id == codex.id
    assert store.side_by_side_member(REPO, 1, 40).id == claude.id
    assert store.side_by_side_member(REPO, 2, 50).id == other.id
    assert store.side_by_side_member(REPO, 1, 50) is None  # another issue's run
    assert store.side_by_side_member(REPO, 1, 60) is None
    assert store.side_by_side_member("acme/other", 1, 41) is None
    assert store.side_by_side_member(REPO, 1, 1) is None  # the issue itself


def test_the_new_fields_read_back_as_written(store):
    request = running_request(store)
    [member] = store.start_members(request, ["claude"])
    store.update(member.id, attempt=1, turns=7, test_result="not run: setup command 1 failed")
    store.update(request.id, attempt=1, comparison_comment_id=2**40)
    again, request_again = store.get(member.id), store.get(request.id)
    assert (again.turns, again.test_result) == (7, "not run: setup command 1 failed")
    assert request_again.comparison_comment_id == 2**40
    command = store.record_delivery("g-pick", "issue_comment", "created", NewTask(
        trigger="comment", repo=REPO, installation_id=1, number=1, comment_id=99, instruction="",
        requested_by="alice", requested_by_id=5, command="pick", picked_pr=41))
    assert store.get(command.id).picked_pr == 41
    assert store.get(command.id).agents is None


def test_waiting_members_do_not_count_as_queued_work(store):
    """A request given back to wait keeps its place as one task: its members are not work
    waiting of their own, against ASYNC_CODE_MAX_QUEUE nor in a queue position."""
    request = running_request(store)
    store.start_members(request, AGENTS)
    assert store.reattempt(request.id, 1)
    later = plain_task(store, 2)

    assert store.queued_for_repo(REPO) == 2  # the request and the later task
    assert store.waiting_ahead_of(later.id) == 1  # the request


# PostgreSQL: members are never jobs of the queue

def _jobs(url):
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as db:
        return db.execute("SELECT id, task_name, args, status::text FROM "
                          "async_code.procrastinate_jobs ORDER BY id").fetchall()


def test_members_never_get_a_job_of_their_own(migrated_postgres_url):
    with PostgresStore(migrated_postgres_url) as store:
        store.initialise()
        request = running_request(store)
        store.start_members(request, AGENTS)
        first_job = store.get(request.id).job_id
        # A worker took the run job, then was judged gone: the request gets a new job.
        with psycopg.connect(migrated_postgres_url) as db:
            db.execute("UPDATE async_code.procrastinate_jobs SET status = 'doing' WHERE id = %s",
                       (first_job,))
        assert store.reattempt(request.id, 1, stalled_job=first_job)
        second = start(store, request.id, "host:2")
        members = store.start_members(second, AGENTS)
        store.request_cancel(REPO, 1, by="carol", task_id=request.id)

        jobs = _jobs(migrated_postgres_url)
        assert {job["args"]["task_id"] for job in jobs} == {request.id}
        assert [job["task_name"] for job in jobs] == [ACKNOWLEDGE_JOB, RUN_JOB, RUN_JOB]
        assert [store.get(m.id).job_id for m in members] == [None] * len(AGENTS)
        assert store.get(request.id).job_id == jobs[-1]["id"] != first_job


# SQLite: a member is never handed out on its own

def test_a_member_is_never_claimed(tmp_path):
    store = make_store(tmp_path)
    request = running_request(store)
    members = store.start_members(request, AGENTS)
    assert store.reattempt(request.id, 1)
    # The members wait, acknowledged, and even put ahead of everything else...
    for member in members:
        store.update(member.id, created_at="2001-01-01T00:00:00.000000+00:00")
    other = plain_task(store, 2)

    # ...yet only the request and the other issue's task are handed out.
    assert store.claim_next("host:2").id == request.id
    assert store.claim_next("host:2").id == other.id
    assert store.claim_next("host:2") is None
    assert {store.get(m.id).status for m in members} == {PENDING}


def test_a_running_member_does_not_hold_up_its_request(tmp_path):
    store = make_store(tmp_path)
    request = running_request(store)
    running, waiting = store.start_members(request, ["claude", "codex"])
    assert store.reattempt(request.id, 1)
    store.update(running.id, status=RUNNING)  # one member still shows running

    assert store.claim_next("host:2").id == request.id


def test_the_group_counts_as_one_task_on_its_issue(tmp_path):
    store = make_store(tmp_path)
    request = running_request(store)
    store.start_members(request, AGENTS)
    later = plain_task(store, 1, comment_id=77)
    other = plain_task(store, 2)

    assert store.claim_next("host:1").id == other.id  # issue 1 is busy with the request
    assert store.claim_next("host:1") is None
    store.finish(request.id, COMPLETED, attempt=1)
    assert store.claim_next("host:1").id == later.id


# SQLite: recovery attempts the request again, never a member on its own

def _recovery_services(store, tmp_path, docker_client):
    from app.settings import Settings
    from runner.sandbox import SandboxUser
    from runner.services import Services

    return Services(settings=Settings(data_dir=str(tmp_path / "data")), store=store, github=None,
                    docker=docker_client, anthropic=None, instance=store.instance_id(),
                    sandbox=SandboxUser("61000:61000", (61000, 61000)))


GONE = f"{socket.gethostname()}:999999"  # a process of this host that is not running
LONG_AGO = "2001-01-01T00:00:00.000000+00:00"


def test_recovery_attempts_a_lost_request_again_with_its_members(tmp_path, docker_client):
    from runner import recovery

    store = make_store(tmp_path)
    request = running_request(store)
    running, done = store.start_members(request, ["claude", "codex"])
    done = finish_member(store, done)
    for task_id in (request.id, running.id):  # its process died long ago
        store.update(task_id, claimed_by=GONE, heartbeat_at=LONG_AGO, status_comment_id=None)

    recovery.recover(_recovery_services(store, tmp_path, docker_client), starting=False)

    assert (store.get(request.id).status, store.get(running.id).status) == (PENDING, PENDING)
    assert store.get(done.id) == done
    second = store.claim_next("host:2")
    assert second.id == request.id and second.attempt == 2
    assert [(m.status, m.attempt) for m in store.start_members(second, ["claude", "codex"])] == [
        (RUNNING, 2), (COMPLETED, 1)]


def test_recovery_leaves_a_member_to_its_request(tmp_path, docker_client):
    """A member that looks lost while its request's process lives is that process's to end."""
    from runner import recovery

    store = make_store(tmp_path)
    request = running_request(store)
    store.update(request.id, claimed_by=f"{socket.gethostname()}:{os.getpid()}")
    running, _ = store.start_members(request, ["claude", "codex"])
    store.update(running.id, claimed_by=GONE, heartbeat_at=LONG_AGO)

    recovery.recover(_recovery_services(store, tmp_path, docker_client), starting=False)

    assert (store.get(running.id).status, store.get(running.id).attempt) == (RUNNING, 1)
    assert store.get(request.id).status == RUNNING


# SQLite: the schema

def _columns(path):
    with sqlite3.connect(path) as db:
        return {row[1] for row in db.execute("PRAGMA table_info(tasks)")}


def _indexes(path):
    with sqlite3.connect(path) as db:
        return {row[1] for row in db.execute("PRAGMA index_list(tasks)")}


SIDE_BY_SIDE_COLUMNS = {"agents", "group_of", "turns", "test_result", "compared_at",
                        "comparison_comment_id", "picked_pr"}


def test_initialising_twice_is_fine(tmp_path):
    store = make_store(tmp_path)
    request = running_request(store)
    [member] = store.start_members(request, ["claude"])
    store.initialise()
    assert store.get(member.id).group_of == request.id
    assert SIDE_BY_SIDE_COLUMNS <= _columns(store.path)
    assert "tasks_by_group" in _indexes(store.path)


def test_a_store_of_schema_8_gains_the_side_by_side_columns(tmp_path):
    from app import store as store_module

    path = tmp_path / "old.db"
    _store_of_an_older_schema(path, 8, SIDE_BY_SIDE_COLUMNS)
    assert "tasks_by_group" not in _indexes(path)

    store = Store(path)
    store.initialise()

    assert SIDE_BY_SIDE_COLUMNS <= _columns(path)
    assert "tasks_by_group" in _indexes(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION == 9
    old = store.get("t1")
    assert (old.agents, old.group_of, old.turns, old.test_result, old.compared_at,
            old.comparison_comment_id, old.picked_pr) == (None,) * 7
    # The task an older version recorded runs side by side like any other.
    store.update("t1", acknowledged_at=utcnow(), agents=["claude", "codex"])
    request = store.claim_next("host:1")
    assert (request.id, request.agents) == ("t1", ["claude", "codex"])
    assert [m.agent for m in store.start_members(request, request.agents)] == ["claude", "codex"]
    assert store.mark_compared("t1", 1)
