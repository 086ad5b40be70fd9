"""Re-attempts under attack: slow workers that wake up after being superseded, commits on the
task's branch that only look like the task's own, acknowledgements that run twice. Each test
names the weakness it shows and what would be safe."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psycopg
import pytest

from app.records import NewTask
from runner import pull_request
from tests.conftest import REPO, WRITER, WRITER_ID, wait_until
from tests.fakes.anthropic import Final, ToolCall, Turn


def gated(file: str):
    """The agent waits in its sandbox until the test lets that sandbox go on, then writes `file`."""
    return [Turn([ToolCall("bash", {"command": "until [ -e /tmp/go ]; do sleep 0.2; done; "
                                                f"echo 'VERSION = \"1.0\"' > {file}",
                                    "timeout": 600})]),
            Final(f"Add {file}\n\n{file} holds the version.")]


def sandboxes(docker_client, task_id, attempt=None, *, running=False):
    labels = [f"async-code.task={task_id}"] + ([f"async-code.attempt={attempt}"] if attempt else [])
    return docker_client.api.containers(all=not running, filters={"label": labels})


def let_go(docker_client, task_id, attempt, logs):
    [sandbox] = wait_until(lambda: sandboxes(docker_client, task_id, attempt, running=True), 60,
                           f"the sandbox of attempt {attempt}", logs)
    docker_client.api.exec_start(docker_client.api.exec_create(sandbox["Id"], ["touch", "/tmp/go"]))


def let_everything_go(docker_client, *task_ids):
    for task_id in task_ids:
        for sandbox in sandboxes(docker_client, task_id, running=True):
            try:
                docker_client.api.exec_start(docker_client.api.exec_create(
                    sandbox["Id"], ["touch", "/tmp/go"]))
            except Exception:  # noqa: BLE001 - removed meanwhile
                pass


def remove_sandboxes(docker_client, *task_ids):
    """What a test's killed workers left running: no later test meets it."""
    for task_id in task_ids:
        for sandbox in sandboxes(docker_client, task_id):
            try:
                docker_client.api.remove_container(sandbox["Id"], force=True)
            except Exception:  # noqa: BLE001 - removed meanwhile
                pass


def git(github, *args, stdin: str | None = None):
    return subprocess.run(["git", "--git-dir", str(github.repo_path(REPO)), *args],
                          capture_output=True, text=True, input=stdin)


def job_status(url: str, job_id: int) -> str:
    with psycopg.connect(url) as db:
        return db.execute("SELECT status FROM async_code.procrastinate_jobs WHERE id = %s",
                          (job_id,)).fetchone()[0]


@pytest.fixture
def scaled_out(service_factory, migrated_postgres_url):
    made = []

    def make(**settings: str):
        made.append(service_factory(DATABASE_URL=migrated_postgres_url, **settings).start(workers=0))
        return made[-1]

    yield make
    for service in made:
        service.stop_all()


def test_a_superseded_attempt_that_wakes_up_does_not_end_the_job_its_successor_runs(
        scaled_out, github, model, docker_client, migrated_postgres_url):
    """Weakness: a worker judged gone while it was only slow (paused past the lease) has its
    run job moved back to `todo` by the stalled-job pass and taken by another worker; when the
    slow one wakes, its attempt is superseded and `execute` returns normally, so the queue
    finishes the job as succeeded — the queue's finish has no check of who holds the job. The
    job the successor is running is then marked done: its issue's lock is released and the
    next task on the same issue runs at the same time (and if the successor now dies, no
    stalled-job pass ever finds its task, which stays running for ever; had nobody taken the
    job yet, the task would stay pending for ever). Safe: a superseded attempt never ends the
    queue's job (the pass gives the task a fresh job, or the finish is tied to the worker that
    holds the job), so the issue stays locked until the attempt that is current ends."""
    model.add_script("add a version module", gated("version.py"))
    model.add_script("write a changelog", gated("changelog.py"))
    receiver = scaled_out(ASYNC_CODE_LEASE_SECONDS="3")
    slow = receiver.start_worker()
    first = receiver.comment("@async-code add a version module", comment_id=1, login=WRITER,
                             user_id=WRITER_ID)
    wait_until(lambda: sandboxes(docker_client, first, 1, running=True), 60,
               "the first attempt's sandbox", slow.logs)
    os.kill(slow.pid, signal.SIGSTOP)  # slow, not dead: it stops beating for a while
    second = None
    try:
        successor = receiver.start_worker(ASYNC_CODE_LEASE_SECONDS="3")
        wait_until(lambda: sandboxes(docker_client, first, 2, running=True), 90,
                   "the second attempt's sandbox", successor.logs)
    finally:
        os.kill(slow.pid, signal.SIGCONT)
    try:
        wait_until(lambda: "attempt 1 was superseded" in slow.logs(), 60,
                   "the slow attempt to find itself superseded", slow.logs)
        time.sleep(2)  # for its worker to end the job, as it does once the job function returns
        # Another request on the same issue, while attempt 2 of the first still runs.
        second = receiver.comment("@async-code write a changelog", comment_id=2, login=WRITER,
                                  user_id=WRITER_ID)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert receiver.task(second).status == "pending", (
                "a second task ran on the issue while attempt 2 of the first held it",
                receiver.task(first).status, job_status(migrated_postgres_url, receiver.task(first).job_id))
            time.sleep(0.2)
        first_task = receiver.task(first)
        assert (first_task.status, first_task.attempt) == ("running", 2)
        assert job_status(migrated_postgres_url, first_task.job_id) == "doing"
    finally:
        let_everything_go(docker_client, first, *([second] if second else []))
        receiver.stop_all()
        remove_sandboxes(docker_client, first, *([second] if second else []))


def test_a_re_attempt_never_force_pushes_over_a_commit_that_only_carries_the_task_mark(
        service_factory, github, model, docker_client):
    """Weakness: a re-attempt replaces the branch's tip whenever the tip's message carries the
    task's mark. A person who amends or rebases the task's commit (`git commit --amend`, GitHub's
    "update with rebase") keeps that message, and so does anyone with write access who copies
    it: the re-attempt then force-pushes over their work. Safe: the re-attempt replaces only the
    very commit an earlier attempt recorded pushing (the task's `commit_sha`), and otherwise
    fails without pushing, leaving the branch as it was."""
    service = service_factory().start(workers=1)
    model.add_script("add a version module", gated("version.py"))
    task_id = service.comment("@async-code add a version module")
    wait_until(lambda: sandboxes(docker_client, task_id, 1), 60, "the first sandbox", service.logs)
    service.stop(signal.SIGKILL)
    lost = service.task(task_id)
    message = pull_request.commit_message("Add a version module", number=lost.number,
                                          task_id=lost.id, requested_by=lost.requested_by,
                                          requested_by_id=None)
    # What attempt 1 committed and recorded before its worker died.
    earlier = git(github, "commit-tree", "main^{tree}", "-p", "main", "-m", message).stdout.strip()
    service.store.update(task_id, commit_sha=earlier)
    # Someone amends that commit with a fix of their own; the message stays the task's.
    listing = git(github, "ls-tree", "main").stdout
    blob = git(github, "hash-object", "-w", "--stdin", stdin="a person's fix\n").stdout.strip()
    tree = git(github, "mktree", stdin=listing + f"100644 blob {blob}\tfix.txt\n").stdout.strip()
    theirs = git(github, "commit-tree", tree, "-p", "main", "-m", message).stdout.strip()
    assert earlier and theirs and earlier != theirs
    assert git(github, "update-ref", f"refs/heads/{lost.branch}", theirs).returncode == 0

    service.start(workers=1)
    try:
        let_go(docker_client, task_id, 2, service.logs)
        task = service.wait_for_task(task_id)
    finally:
        service.stop()
        remove_sandboxes(docker_client, task_id)

    assert git(github, "rev-parse", lost.branch).stdout.strip() == theirs, "their commit was lost"
    assert task.status == "failed" and "someone pushed to" in task.error


def test_a_hand_back_at_shutdown_does_not_use_up_an_attempt(scaled_out, github, model,
                                                              docker_client):
    """Weakness: a task handed back by a worker asked to stop (a deploy, a scale-down) counts
    that start as an attempt; the stalled-job pass then fails it once the count reaches
    ASYNC_CODE_MAX_ATTEMPTS, saying its workers stopped that many times. With the default of 2,
    one rolling restart and then one crash end a task that crashed once; a few restarts in a
    row leave every running task one crash from failing. Safe: only starts whose worker died
    count against ASYNC_CODE_MAX_ATTEMPTS; a task handed back and then crashed once is
    attempted again and finishes."""
    model.add_script("add a version module", gated("version.py"))
    receiver = scaled_out(ASYNC_CODE_LEASE_SECONDS="3")
    stopping = receiver.start_worker(ASYNC_CODE_SHUTDOWN_GRACE="1")
    task_id = receiver.comment("@async-code add a version module", login=WRITER, user_id=WRITER_ID)
    wait_until(lambda: sandboxes(docker_client, task_id, 1, running=True), 60,
               "the first attempt's sandbox", stopping.logs)
    assert stopping.stop(signal.SIGTERM) == 0
    assert receiver.task(task_id).status == "pending"
    crashing = receiver.start_worker()
    wait_until(lambda: sandboxes(docker_client, task_id, 2, running=True), 60,
               "the second attempt's sandbox", crashing.logs)
    assert crashing.stop(signal.SIGKILL) == -signal.SIGKILL  # the one crash
    survivor = receiver.start_worker()
    try:
        wait_until(lambda: receiver.task(task_id).status == "failed"
                   or sandboxes(docker_client, task_id, 3, running=True), 60,
                   "the task to be re-attempted or failed", survivor.logs)
        let_everything_go(docker_client, task_id)
        task = receiver.wait_for_task(task_id, timeout=90)
        assert (task.status, task.error) == ("completed", None)
    finally:
        let_everything_go(docker_client, task_id)
        receiver.stop_all()
        remove_sandboxes(docker_client, task_id)


def test_a_task_acknowledged_twice_gets_one_run_job(migrated_postgres_url):
    """Weakness: the acknowledge job checks `acknowledged_at` only before it starts; an
    acknowledger that was slow past the lease resumes after the stalled-job pass had another
    acknowledge the task, and `mark_queued` defers a second run job for the same task (and
    points `job_id`, by which `cancel` reaches the running job, at the other one). Safe:
    marking a task queued is conditional on it not being queued yet, so a task has one run
    job however many acknowledgers finish."""
    from app.postgres_store import PostgresStore

    with PostgresStore(migrated_postgres_url, max_connections=2) as store:
        store.initialise()
        task = store.record_delivery("delivery-1", "issue_comment", "created", NewTask(
            trigger="issue_comment", repo=REPO, installation_id=77, number=7, comment_id=1,
            instruction="add a version module", requested_by=WRITER, requested_by_id=WRITER_ID))
        # The acknowledger the pass moved the job to, then the slow one it was taken from.
        store.mark_queued(task.id, status_comment_id=101, check_run_id=None)
        store.mark_queued(task.id, status_comment_id=102, check_run_id=None)
        with psycopg.connect(migrated_postgres_url) as db:
            runs = db.execute("SELECT id FROM async_code.procrastinate_jobs WHERE task_name = 'run' "
                              "AND args->>'task_id' = %s", (task.id,)).fetchall()
    assert len(runs) == 1, f"{len(runs)} run jobs for one task"
