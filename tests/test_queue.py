"""The job queue on PostgreSQL, in-process against a real database: jobs deferred in the
transactions that make them due, the per-issue lock, cancel as the queue's abort, and the
stalled-job pass driven by a worker row whose heartbeat is aged in SQL (the queue's own data)."""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest

from app.postgres_store import (ACKNOWLEDGE_JOB, ACKNOWLEDGE_QUEUE, RUN_JOB, RUN_QUEUE,
                                PostgresStore, issue_lock)
from app.settings import Settings
from app.store import CANCELLED, FAILED, PENDING, RUNNING, NewTask
from runner import queue, status
from runner.cancel_watch import AN_OPERATOR, CANCEL, SHUTDOWN, CancelWatch, HandedBack
from runner.github import GitHubApp
from runner.sandbox import SandboxUser
from runner.services import Services
from tests.conftest import APP_ID, INSTALLATION_ID, REPO


def new_task(number=1, comment_id=None, command=None):
    return NewTask(trigger="comment", repo=REPO, installation_id=INSTALLATION_ID, number=number,
                   comment_id=comment_id or number, instruction="do it", requested_by="alice",
                   requested_by_id=9, command=command)


@pytest.fixture
def store(migrated_postgres_url):
    with PostgresStore(migrated_postgres_url) as postgres:
        postgres.initialise()
        yield postgres


def jobs(url: str) -> list[dict]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as db:
        return db.execute("SELECT id, task_name, queue_name, lock, args, status::text, attempts, "
                          "abort_requested FROM async_code.procrastinate_jobs ORDER BY id").fetchall()


def record(store, number=1, comment_id=None, command=None):
    return store.record_delivery(f"g{number}-{comment_id}", "issue_comment", "created",
                                 new_task(number, comment_id, command))


def test_a_recorded_task_has_its_acknowledge_job(store, migrated_postgres_url):
    task = record(store)
    assert [(j["task_name"], j["queue_name"], j["lock"], j["args"], j["status"])
            for j in jobs(migrated_postgres_url)] == [
        (ACKNOWLEDGE_JOB, ACKNOWLEDGE_QUEUE, f"acknowledge:{REPO}#1", {"task_id": task.id}, "todo")]
    # A replay of the same comment records nothing, so defers nothing.
    assert store.record_delivery("g-again", "issue_comment", "created", new_task()).name == "COMMENT"
    assert len(jobs(migrated_postgres_url)) == 1


def test_a_task_rolled_back_leaves_no_job(store, migrated_postgres_url, monkeypatch):
    deferred = []
    original = PostgresStore._task_recorded

    def defer_then_fail(self, db, *task):
        original(self, db, *task)
        deferred.append(db.execute("SELECT count(*) AS n FROM procrastinate_jobs").fetchone()["n"])
        raise RuntimeError("the transaction fails after the job was deferred")

    monkeypatch.setattr(PostgresStore, "_task_recorded", defer_then_fail)
    with pytest.raises(RuntimeError):
        record(store)
    assert deferred == [1]  # the job was there, inside the transaction
    assert jobs(migrated_postgres_url) == [] and store.list() == []


def test_acknowledging_defers_a_run_job_locked_on_the_issue(store, migrated_postgres_url):
    task = record(store, 3)
    command = record(store, 3, comment_id=99, command="status")
    store.mark_queued(task.id, status_comment_id=5, check_run_id=None)
    store.mark_queued(command.id, status_comment_id=6, check_run_id=None)
    run_jobs = [j for j in jobs(migrated_postgres_url) if j["task_name"] == RUN_JOB]
    assert [(j["queue_name"], j["lock"], j["args"]) for j in run_jobs] == [
        (RUN_QUEUE, issue_lock(REPO, 3), {"task_id": task.id})]
    queued = store.get(task.id)
    assert (queued.job_id, queued.status_comment_id, queued.acknowledged_at is not None) == (
        run_jobs[0]["id"], 5, True)


def test_a_task_cancelled_while_acknowledged_gets_no_run_job(store, migrated_postgres_url):
    task = record(store)
    store.request_cancel(REPO, 1, by="carol")
    store.mark_queued(task.id, status_comment_id=5, check_run_id=None)
    assert store.get(task.id).status == CANCELLED
    assert [j["task_name"] for j in jobs(migrated_postgres_url)] == [ACKNOWLEDGE_JOB]


def _app(store):
    services = Services(settings=Settings(), store=store, github=None, docker=None, anthropic=None,
                        instance="queue-test", sandbox=SandboxUser("61000:61000", (61000, 61000)))
    return queue.build_app(services)


def test_the_lock_runs_one_task_at_a_time_per_issue(store, migrated_postgres_url):
    first, second, other = record(store, 1, 1), record(store, 1, 2), record(store, 2, 3)
    for task in (first, second, other):
        store.mark_queued(task.id, status_comment_id=1, check_run_id=None)
    app = _app(store)

    async def scenario():
        async with app.open_async():
            manager = app.job_manager
            worker = await manager.register_worker()
            taken = [await manager.fetch_job(queues=[RUN_QUEUE], worker_id=worker) for _ in range(3)]
            assert taken[2] is None  # the second task of issue 1 waits for the first
            await manager.finish_job(taken[0], queue.Status.SUCCEEDED, delete_job=False)
            then = await manager.fetch_job(queues=[RUN_QUEUE], worker_id=worker)
            return [job.task_kwargs["task_id"] for job in taken[:2]], then.task_kwargs["task_id"]

    assert asyncio.run(scenario()) == ([first.id, other.id], second.id)


def announcements(url: str, during) -> list[dict]:
    """The queue's job announcements on the run queue's channel while `during()` runs."""
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f'LISTEN "procrastinate_queue_v1#{RUN_QUEUE}"')
        during()
        return [json.loads(note.payload) for note in listener.notifies(timeout=1.0)]


def test_a_job_ending_announces_the_next_one_its_lock_held_back(store, migrated_postgres_url):
    # Workers that found nothing runnable sleep until a job is announced: the next task on the
    # same issue must be announced when the task before it ends, not wait for a poll.
    first, second, alone = record(store, 1, 1), record(store, 1, 2), record(store, 2, 3)
    for task in (first, second, alone):
        store.mark_queued(task.id, status_comment_id=1, check_run_id=None)
    app = _app(store)

    async def take_all():
        async with app.open_async():
            manager = app.job_manager
            worker = await manager.register_worker()
            return [await manager.fetch_job(queues=[RUN_QUEUE], worker_id=worker) for _ in range(2)]

    held, unheld = asyncio.run(take_all())

    def finish(job):
        async def run():
            async with app.open_async():
                await app.job_manager.finish_job(job, queue.Status.SUCCEEDED, delete_job=False)
        return lambda: asyncio.run(run())

    assert announcements(migrated_postgres_url, finish(held)) == [
        {"type": "job_inserted", "job_id": held.id}]
    # Nothing waits behind the other issue's task: its end announces nothing.
    assert announcements(migrated_postgres_url, finish(unheld)) == []


def test_cancel_cancels_a_waiting_job_and_aborts_a_running_one(store, migrated_postgres_url):
    waiting, running = record(store, 1, 1), record(store, 2, 2)
    for task in (waiting, running):
        store.mark_queued(task.id, status_comment_id=1, check_run_id=None)
    app = _app(store)

    async def take_running_job():
        async with app.open_async():
            worker = await app.job_manager.register_worker()
            job = await app.job_manager.fetch_job(queues=[RUN_QUEUE], worker_id=worker)
            assert job.task_kwargs["task_id"] == waiting.id
            job = await app.job_manager.fetch_job(queues=[RUN_QUEUE], worker_id=worker)
            assert job.task_kwargs["task_id"] == running.id

    asyncio.run(take_running_job())
    # The first job was taken too; put it back to waiting, as if no worker had it yet.
    with psycopg.connect(migrated_postgres_url) as db:
        db.execute("UPDATE async_code.procrastinate_jobs SET status = 'todo', worker_id = NULL "
                   "WHERE id = %s", (store.get(waiting.id).job_id,))
    assert store.start_attempt(running.id, "host:1").status == RUNNING
    store.request_cancel(REPO, 1, by="carol")
    store.request_cancel(REPO, 2, by="carol")
    by_id = {j["id"]: j for j in jobs(migrated_postgres_url)}
    assert by_id[store.get(waiting.id).job_id]["status"] == "cancelled"
    aborted = by_id[store.get(running.id).job_id]
    assert (aborted["status"], aborted["abort_requested"]) == ("doing", True)
    assert store.start_attempt(waiting.id, "host:1") is None  # a cancelled task never starts


# The stalled-job pass

@pytest.fixture
def services(store, github, app_key):
    github_app = GitHubApp(app_id=str(APP_ID), private_key=app_key[0], api_url=github.base_url,
                           slug="async-code")
    return Services(settings=Settings(lease_seconds="5", max_attempts="2"), store=store,
                    github=github_app, docker=None, anthropic=None, instance="queue-test",
                    sandbox=SandboxUser("61000:61000", (61000, 61000)))


def _acknowledged(services, github, number=7):
    store = services.store
    github.add_issue(REPO, number)
    task = record(store, number)
    client = services.github.repo_client(INSTALLATION_ID, REPO, {"issues": "write", "metadata": "read"})
    comment_id = client.comment(number, status.queued(task.id, 1))
    store.mark_queued(task.id, status_comment_id=comment_id, check_run_id=None)
    return task.id, comment_id


def test_the_stalled_pass_reattempts_then_fails_past_max_attempts(services, github,
                                                                  migrated_postgres_url):
    task_id, comment_id = _acknowledged(services, github)
    store = services.store
    app = queue.build_app(services)

    async def start_on_a_worker_that_dies():
        """A worker takes the run job and starts the task, then its heartbeat goes silent."""
        manager = app.job_manager
        worker = await manager.register_worker()
        job = await manager.fetch_job(queues=[RUN_QUEUE], worker_id=worker)
        assert job.task_kwargs == {"task_id": task_id}
        store.start_attempt(task_id, f"elsewhere:{worker}")
        await queue.reattempt_stalled(manager, services)  # beating: nothing happens yet
        assert store.get(task_id).status == RUNNING
        with psycopg.connect(migrated_postgres_url) as db:
            db.execute("UPDATE async_code.procrastinate_workers SET last_heartbeat = "
                       "now() - interval '6 seconds' WHERE id = %s", (worker,))
        await queue.reattempt_stalled(manager, services)

    async def scenario():
        async with app.open_async():
            await start_on_a_worker_that_dies()
            # The gone worker's job ends; the next attempt has a job of its own, so the gone
            # worker, should it wake, can only end a job nobody runs any more.
            stalled, fresh = [j for j in jobs(migrated_postgres_url) if j["task_name"] == RUN_JOB]
            again = store.get(task_id)
            assert (stalled["status"], fresh["status"]) == ("failed", "todo")
            assert again.job_id == fresh["id"] and fresh["lock"] == stalled["lock"]
            assert (again.status, again.attempt, again.claimed_by) == (PENDING, 1, None)
            assert "re-attempt 2 of 2: the worker running it stopped" in github.comments[comment_id]["body"]

            await start_on_a_worker_that_dies()
            assert [j["status"] for j in jobs(migrated_postgres_url)
                    if j["task_name"] == RUN_JOB] == ["failed", "failed"]

    asyncio.run(scenario())
    failed = store.get(task_id)
    assert (failed.status, failed.attempt) == (FAILED, 2)
    assert failed.error == queue.gave_up(2, 2)
    assert "ASYNC_CODE_MAX_ATTEMPTS is 2" in github.comments[comment_id]["body"]
    assert [body for body in github.comments[comment_id]["history"] if "re-attempt" in body] != []


# The abort reason reaching the sandbox

def test_a_shutdown_stops_the_sandbox_once_and_hands_the_task_back(store):
    task = record(store)
    stopped = []
    watch = CancelWatch(store, task.id, lambda: stopped.append(True), abort_reason=lambda: SHUTDOWN)
    for _ in range(2):
        with pytest.raises(HandedBack):
            watch.check()
    assert stopped == [True] and watch.handed_back and watch.cancelled_by is None


def test_an_abort_without_the_stores_flag_is_a_cancel_by_an_operator(store):
    task = record(store)
    stopped = []
    reason = [None]
    watch = CancelWatch(store, task.id, lambda: stopped.append(True), abort_reason=lambda: reason[0])
    assert watch.check() is None and stopped == []
    reason[0] = CANCEL
    assert watch.check() == AN_OPERATOR and stopped == [True]


def test_a_task_whose_acknowledgers_keep_dying_fails_past_max_attempts(services,
                                                                       migrated_postgres_url):
    # A task that stops every worker acknowledging it must not take workers down for ever.
    task = record(services.store)
    app = queue.build_app(services)

    async def acknowledger_dies():
        manager = app.job_manager
        worker = await manager.register_worker()
        job = await manager.fetch_job(queues=[ACKNOWLEDGE_QUEUE], worker_id=worker)
        assert job.task_kwargs == {"task_id": task.id}
        with psycopg.connect(migrated_postgres_url) as db:
            db.execute("UPDATE async_code.procrastinate_workers SET last_heartbeat = "
                       "now() - interval '6 seconds' WHERE id = %s", (worker,))
        await queue.reattempt_stalled(manager, services)

    async def scenario():
        async with app.open_async():
            await acknowledger_dies()
            [job] = [j for j in jobs(migrated_postgres_url) if j["task_name"] == ACKNOWLEDGE_JOB]
            assert job["status"] == "todo" and services.store.get(task.id).status == PENDING
            await acknowledger_dies()

    asyncio.run(scenario())
    [job] = [j for j in jobs(migrated_postgres_url) if j["task_name"] == ACKNOWLEDGE_JOB]
    failed = services.store.get(task.id)
    assert job["status"] == "failed"
    assert (failed.status, failed.error) == (FAILED, queue.NOT_ACKNOWLEDGED)
