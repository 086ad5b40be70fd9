"""Scaled out on PostgreSQL, with real processes: a receiver (`serve --workers 0`) and
`async-code worker`s sharing one database (a test's own), a real Docker engine, the real
clients against loopback fakes. Workers die, stop and share issues; no task is lost, none is
run twice, nothing is posted twice."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import REPO, WRITER, WRITER_ID, wait_until
from tests.fakes.anthropic import Final, ToolCall, Turn

OLD_MAIN = '''def main(argv):
    print("hello from widgets")
    return 0'''
NEW_MAIN = '''def main(argv):
    if "--version" in argv:
        print("widgets 1.0.0")
        return 0
    print("hello from widgets")
    return 0'''


def script(sleep: int = 0):
    """Edit the CLI, after sleeping `sleep` seconds in the sandbox (a task to interrupt)."""
    steps = [Turn([ToolCall("bash", {"command": f"sleep {sleep}"}, expect="exit code 0")])] if sleep else []
    return steps + [
        Turn([ToolCall("edit_file", {"command": "str_replace", "path": "cli.py", "old_str": OLD_MAIN,
                                     "new_str": NEW_MAIN}, expect_error=False)]),
        Final("Add a --version flag to the CLI\n\nIt prints the version."),
    ]


@pytest.fixture
def scaled_out(service_factory, migrated_postgres_url):
    """A receiver on a PostgreSQL database of this test's own; workers are started by the test."""

    made = []

    def make(**settings: str):
        made.append(service_factory(DATABASE_URL=migrated_postgres_url, **settings).start(workers=0))
        return made[-1]

    yield make
    for service in made:  # before the database goes
        service.stop_all()


def bot_comments_on(github, number: int) -> list[dict]:
    return [c for c in github.comments.values()
            if c["user"] == "async-code[bot]" and c["issue_number"] == number]


def sandboxes_of(docker_client, task_id: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"async-code.task={task_id}"})


def test_a_receiver_and_three_workers_turn_30_issues_into_30_pull_requests(scaled_out, github, model):
    model.add_script("print its version", script())
    receiver = scaled_out(ASYNC_CODE_MAX_QUEUE="50")
    workers = [receiver.start_worker(concurrency=2) for _ in range(3)]
    numbers = range(101, 131)
    task_ids = {number: receiver.comment("@async-code make the CLI print its version", number=number,
                                         comment_id=5000 + number, login=WRITER, user_id=WRITER_ID)
                for number in numbers}
    done = {number: receiver.wait_for_task(task_id, timeout=240) for number, task_id in task_ids.items()}

    assert {task.status for task in done.values()} == {"completed"}, [
        (t.id, t.error) for t in done.values() if t.status != "completed"]
    assert len(github.pulls) == 30
    assert sorted(int(pr["body"].split("Fixes #")[1].split()[0]) for pr in github.pulls) == list(numbers)
    for number, task in done.items():
        assert task.attempt == 1  # started once
        [status_comment] = bot_comments_on(github, number)  # one status comment, edited
        assert status_comment["id"] == task.status_comment_id and task.pr_url in status_comment["body"]
    # The receiver ran nothing; the workers shared the work.
    pids = {int(task.claimed_by.rpartition(":")[2]) for task in done.values()}
    assert pids <= {worker.pid for worker in workers} and len(pids) >= 2
    assert receiver.process.pid not in pids


def test_a_task_of_a_killed_worker_is_reattempted_by_another_after_the_lease(
        scaled_out, github, model, docker_client):
    model.add_script("print its version", script(sleep=4))
    receiver = scaled_out(ASYNC_CODE_LEASE_SECONDS="3")
    doomed = receiver.start_worker()
    task_id = receiver.comment("@async-code make the CLI print its version", login=WRITER,
                               user_id=WRITER_ID)
    # Killed in the middle of the task: its sandbox runs the agent's `sleep`.
    wait_until(lambda: model.requests and sandboxes_of(docker_client, task_id), 60,
               "the task's sandbox to run", doomed.logs)
    assert doomed.stop(signal.SIGKILL) == -signal.SIGKILL
    assert receiver.task(task_id).status == "running"
    survivor = receiver.start_worker(ASYNC_CODE_LEASE_SECONDS="3")

    task = receiver.wait_for_task(task_id, timeout=90)
    assert (task.status, task.attempt) == ("completed", 2), (task.error, survivor.logs())
    assert task.claimed_by.endswith(f":{survivor.pid}")
    assert len(github.pulls) == 1
    [status_comment] = bot_comments_on(github, 7)
    assert any("re-attempt 2 of 2: the worker running it stopped" in body
               for body in status_comment["history"])
    assert "done" in status_comment["body"]
    assert sandboxes_of(docker_client, task_id) == []  # the killed worker's one too


def test_a_worker_stopped_mid_task_hands_it_back_and_another_finishes_it(
        scaled_out, github, model, docker_client):
    model.add_script("print its version", script(sleep=5))
    receiver = scaled_out()
    stopping = receiver.start_worker(ASYNC_CODE_SHUTDOWN_GRACE="1")
    task_id = receiver.comment("@async-code make the CLI print its version", login=WRITER,
                               user_id=WRITER_ID)
    wait_until(lambda: model.requests and sandboxes_of(docker_client, task_id), 60,
               "the task's sandbox to run", stopping.logs)
    assert stopping.stop(signal.SIGTERM) == 0  # it exits by itself, once the task is handed back
    handed_back = receiver.task(task_id)
    assert (handed_back.status, handed_back.attempt, handed_back.claimed_by) == ("pending", 1, None), stopping.logs()
    assert sandboxes_of(docker_client, task_id) == []  # stopped at once, not left running
    other = receiver.start_worker()

    task = receiver.wait_for_task(task_id, timeout=90)
    assert (task.status, task.attempt) == ("completed", 2), (task.error, other.logs())
    assert task.claimed_by.endswith(f":{other.pid}") and len(github.pulls) == 1
    [status_comment] = bot_comments_on(github, 7)
    assert any("handed back: the worker is shutting down; another will carry on" in body
               for body in status_comment["history"])
    assert "done" in status_comment["body"]


def test_two_requests_on_one_issue_run_one_after_the_other_on_any_workers(scaled_out, github, model):
    model.add_script("print its version", script(sleep=2))
    receiver = scaled_out()
    for _ in range(2):
        receiver.start_worker(concurrency=2)
    first = receiver.comment("@async-code make the CLI print its version", comment_id=1,
                             login=WRITER, user_id=WRITER_ID)
    second = receiver.comment("@async-code also make the CLI print its version", comment_id=2,
                              login=WRITER, user_id=WRITER_ID)
    done = [receiver.wait_for_task(task_id, timeout=90) for task_id in (first, second)]
    assert [task.status for task in done] == ["completed", "completed"], [t.error for t in done]
    # Four idle slots, yet the second started only once the first had finished.
    assert done[1].started_at >= done[0].finished_at
    assert len(github.pulls) == 2 and len(bot_comments_on(github, 7)) == 2
    assert f"It starts when task `{first[:8]}`" in github.comments[done[1].status_comment_id]["history"][0]


def test_serve_with_workers_runs_the_queue_in_its_own_process(service_factory, migrated_postgres_url,
                                                                 github, model):
    model.add_script("print its version", script())
    service = service_factory(DATABASE_URL=migrated_postgres_url).start(workers=1)
    task_id = service.comment("@async-code make the CLI print its version", login=WRITER,
                              user_id=WRITER_ID)
    task = service.wait_for_task(task_id)
    assert (task.status, task.attempt) == ("completed", 1), (task.error, service.logs())
    assert task.claimed_by.endswith(f":{service.process.pid}") and len(github.pulls) == 1
    service.stop_all()  # SIGTERM stops its workers too, before the database goes
    assert "job queue: the workers stopped (1 task slots)" in service.logs()
