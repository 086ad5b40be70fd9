"""The task stores: one contract, kept by the SQLite store and the PostgreSQL store alike
(every test taking `store` runs against both), then the SQLite store's own claims."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from app.postgres_store import PostgresStore
from app.store import (CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, Duplicate, NewTask, Store,
                       Superseded, utcnow)


def new_task(number=1, repo="acme/widgets", comment_id=None):
    return NewTask(trigger="comment", repo=repo, installation_id=1, number=number,
                   comment_id=comment_id or number,
                   instruction="do it", requested_by="alice", requested_by_id=5)


def make_store(tmp_path):
    store = Store(tmp_path / "t.db")
    store.initialise()
    return store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield make_store(tmp_path)
        return
    with PostgresStore(request.getfixturevalue("migrated_postgres_url")) as postgres:
        postgres.initialise()
        yield postgres


def acknowledged(store, count, repo="acme/widgets"):
    ids = []
    for n in range(count):
        task = store.record_delivery(f"g-{repo}-{n}", "issue_comment", "created", new_task(n + 1, repo))
        store.update(task.id, acknowledged_at=utcnow(), status_comment_id=1000 + n)
        ids.append(task.id)
    return ids



def test_a_delivery_and_its_task_are_recorded_together(store):
    task = store.record_delivery("g1", "issue_comment", "created", new_task())
    assert store.get(task.id) == task and task.status == PENDING and len(task.id) == 32
    assert store.record_delivery("g1", "issue_comment", "created", new_task()) is Duplicate.DELIVERY
    assert store.record_delivery("g2", "issue_comment", "created", new_task()) is Duplicate.COMMENT
    assert len(store.list()) == 1 and store.delivery_count() == 2


def test_waiting_tasks_are_listed_oldest_first_until_acknowledged(store):
    first = store.record_delivery("g1", "issue_comment", "created", new_task(1))
    second = store.record_delivery("g2", "issue_comment", "created", new_task(2))
    assert [t.id for t in store.unacknowledged()] == [first.id, second.id]
    store.update(first.id, acknowledged_at=utcnow())
    assert [t.id for t in store.unacknowledged()] == [second.id]
    assert [t.id for t in store.list()] == [second.id, first.id]  # newest first
    assert [t.id for t in store.list(limit=1)] == [second.id]


def test_tasks_waiting_ahead_and_per_repository_count(store):
    ids = acknowledged(store, 3)
    acknowledged(store, 1, repo="acme/other")
    assert [store.waiting_ahead_of(i) for i in ids] == [0, 1, 2]
    assert store.queued_for_repo("acme/widgets") == 3
    store.update(ids[0], status=RUNNING, started_at=utcnow())
    assert store.waiting_ahead_of(ids[2]) == 1 and store.queued_for_repo("acme/widgets") == 2


def test_nul_characters_are_kept_as_a_replacement_character_by_every_store(store):
    # PostgreSQL refuses NUL in text and jsonb; a payload or an agent's output may hold one.
    asked = NewTask(trigger="label", repo="acme/wid\x00gets", installation_id=1, number=3,
                    comment_id=None, instruction="do\x00it", requested_by="al\x00ice",
                    requested_by_id=5, issue_body="body\x00", label="async\x00code",
                    review_context={"path\x00": ["hunk\x00"]})
    task = store.record_delivery("g\x00", "issues\x00", "labeled\x00", asked)
    assert store.get(task.id) == task
    assert (task.repo, task.instruction, task.requested_by, task.issue_body, task.label) == (
        "acme/wid\ufffdgets", "do\ufffdit", "al\ufffdice", "body\ufffd", "async\ufffdcode")
    assert task.review_context == {"path\ufffd": ["hunk\ufffd"]}
    assert store.record_delivery("g\x00", "issues", "labeled", asked) is Duplicate.DELIVERY
    store.finish(task.id, FAILED, output="out\x00", error="err\x00",
                 chat_history=[{"role": "user", "content": "x\x00"}])
    finished = store.get(task.id)
    assert (finished.output, finished.error) == ("out\ufffd", "err\ufffd")
    assert finished.chat_history == [{"role": "user", "content": "x\ufffd"}]


def test_json_fields_round_trip(store):
    [task_id] = acknowledged(store, 1)
    store.finish(task_id, COMPLETED, patches={"diff": "d", "files": []}, changed_files=["a.py"],
                 chat_history=[{"role": "user", "content": "x"}])
    task = store.get(task_id)
    assert task.patches == {"diff": "d", "files": []} and task.changed_files == ["a.py"]
    assert task.finished_at and task.status == COMPLETED


def test_values_read_back_as_they_were_written(store):
    task = store.record_delivery("g1", "pull_request_review_comment", "created", NewTask(
        trigger="review_comment", repo="acme/widgets", installation_id=2**40, number=3,
        comment_id=2**35, instruction="tidy", requested_by="alice", requested_by_id=5, draft=True,
        review_context={"path": "a.py", "line": 3, "hunk": "@@ -1 +1 @@\n-a\n+b"}))
    acknowledged_at = utcnow()
    store.update(task.id, acknowledged_at=acknowledged_at, cost_usd=0.1234, exit_code=-9,
                 output="ünïcode ✓", chat_history=[{"role": "user", "content": ["x", 1, None]}],
                 changed_files=[], patches="a JSON string")
    again = store.get(task.id)
    assert again.acknowledged_at == acknowledged_at
    assert (again.installation_id, again.comment_id, again.draft) == (2**40, 2**35, True)
    assert (again.cost_usd, again.exit_code, again.output) == (0.1234, -9, "ünïcode ✓")
    assert again.review_context == task.review_context
    assert again.chat_history == [{"role": "user", "content": ["x", 1, None]}]
    assert (again.changed_files, again.patches) == ([], "a JSON string")
    # Times are ISO strings in UTC with microseconds, as utcnow() makes them.
    for value in (again.created_at, again.acknowledged_at):
        assert datetime.fromisoformat(value).utcoffset().total_seconds() == 0
        assert len(value) == len(utcnow()) and value.endswith("+00:00") and "T" in value
    assert again.summary()["draft"] is True


def test_unknown_fields_are_refused_and_the_instance_id_is_kept(store):
    task = store.record_delivery("g1", "issue_comment", "created", new_task())
    with pytest.raises(ValueError, match="unknown task fields"):
        store.update(task.id, colour="red")
    first = store.instance_id()
    assert len(first) == 16 and store.instance_id() == first


def test_work_on_one_issue_in_the_order_it_was_asked(store):
    first, second = acknowledged(store, 2)
    third = store.record_delivery("g3", "issue_comment", "created", new_task(1, comment_id=99))
    store.update(first, status=RUNNING, started_at=utcnow())
    assert [t.id for t in store.ahead_on_same(third.id)] == [first]
    assert [t.id for t in store.work_on("acme/widgets", 1)] == [first, third.id]
    assert [t.id for t in store.running()] == [first]
    assert store.unfinished_ids() == {first, second, third.id}
    store.finish(first, COMPLETED)
    assert store.ahead_on_same(third.id) == [] and store.unfinished_ids() == {second, third.id}
    assert store.get(first).finished_at


def test_cancel_ends_waiting_tasks_and_flags_running_ones(store):
    running_id, = acknowledged(store, 1)
    waiting = store.record_delivery("g9", "issue_comment", "created", new_task(1, comment_id=99))
    store.update(waiting.id, acknowledged_at=utcnow())
    other, = acknowledged(store, 1, repo="acme/other")
    store.update(running_id, status=RUNNING, started_at=utcnow())

    cancelled, stopping = store.request_cancel("acme/widgets", 1, by="carol")

    assert [t.id for t in cancelled] == [waiting.id] and cancelled[0].status == CANCELLED
    assert [t.id for t in stopping] == [running_id] and stopping[0].status == RUNNING
    assert store.cancel_requested(running_id) == "carol" and store.cancel_requested(other) is None
    assert store.get(waiting.id).error == "cancelled by @carol"
    # Asking again finds nothing new to cancel.
    assert store.request_cancel("acme/widgets", 1, by="dave") == ([], [])


def test_cancelling_one_task_leaves_the_others(store):
    first, = acknowledged(store, 1)
    second = store.record_delivery("g9", "issue_comment", "created", new_task(1, comment_id=99))
    cancelled, stopping = store.request_cancel("acme/widgets", 1, by="carol", task_id=second.id)
    assert ([t.id for t in cancelled], stopping) == ([second.id], [])
    assert store.get(first).status == PENDING


def test_a_retry_repeats_the_request_for_whoever_asked(store):
    original = store.record_delivery("g1", "issue_comment", "created", NewTask(
        trigger="comment", repo="acme/widgets", installation_id=1, number=3, comment_id=70,
        instruction="add a flag", requested_by="alice", requested_by_id=5, base_branch="dev",
        draft=True, model="claude-haiku-4-5"))
    store.record_delivery("g2", "issue_comment", "created", None)
    retry = store.record_retry(original, guid="g2", requested_by="carol", requested_by_id=6)
    again = store.get(retry.id)
    assert (again.instruction, again.base_branch, again.draft, again.model, again.retry_of) == (
        "add a flag", "dev", True, "claude-haiku-4-5", original.id)
    assert (again.requested_by, again.requested_by_id, again.comment_id) == ("carol", 6, None)
    assert again.status == PENDING and again.acknowledged_at is None


def test_continuing_keeps_the_model_asked_for(store):
    previous = store.record_delivery("g1", "issue_comment", "created", NewTask(
        trigger="comment", repo="acme/widgets", installation_id=1, number=3, comment_id=70,
        instruction="add a flag", requested_by="alice", requested_by_id=5,
        model="claude-haiku-4-5"))
    store.update(previous.id, pr_number=9)
    store.record_delivery("g2", "issue_comment", "created", None)
    carry_on = store.record_continue(store.get(previous.id), guid="g2", requested_by="carol",
                                     requested_by_id=6)
    again = store.get(carry_on.id)
    assert (again.trigger, again.number, again.model, again.retry_of) == (
        "continue", 9, "claude-haiku-4-5", previous.id)


def test_a_replayed_label_is_one_task(store):
    label_task = NewTask(trigger="label", repo="acme/widgets", installation_id=1, number=4,
                         comment_id=None, instruction="Resolve issue #4", requested_by="alice",
                         requested_by_id=5, label="async-code")
    first = store.record_delivery("g1", "issues", "labeled", label_task)
    assert store.record_delivery("g2", "issues", "labeled", label_task) is Duplicate.LABEL
    store.finish(first.id, COMPLETED)
    assert store.record_delivery("g3", "issues", "labeled", label_task).id != first.id


def test_losing_the_installation_finishes_its_waiting_tasks(store):
    from app.store import InstallationChange

    widgets, = acknowledged(store, 1)
    other, = acknowledged(store, 1, repo="acme/other")
    store.record_delivery("r1", "installation_repositories", "removed",
                          installation=InstallationChange(1, "removed", ("acme/widgets",)))
    assert store.get(widgets).status == FAILED
    assert "removed from the App's installation" in store.get(widgets).error
    assert store.get(other).status == PENDING
    assert store.installation_refusal(1, "acme/widgets") and not store.installation_refusal(1, "acme/other")
    assert not store.installation_refusal(2, "acme/widgets")  # another installation: nothing recorded

    store.record_delivery("r2", "installation", "deleted", installation=InstallationChange(1, "deleted"))
    assert store.get(other).status == FAILED and store.get(other).error == "the App was uninstalled"
    assert store.installation_refusal(1, "acme/other") == "the App was uninstalled"
    store.record_delivery("r3", "installation", "created", installation=InstallationChange(1, "created"))
    assert store.installation_refusal(1, "acme/other") is None


def test_each_button_of_a_task_works_once(store):
    from app.buttons import ButtonPress

    target, = acknowledged(store, 1)
    store.update(target, check_run_id=555, pushed_check_run_id=556)

    def press(guid, action="retry", check_run_id=555, task_id=target, repo="acme/widgets"):
        return store.record_delivery(guid, "check_run", "requested_action", button=ButtonPress(
            repo=repo, installation_id=1, check_run_id=check_run_id, task_id=task_id,
            action=action, requested_by="carol", requested_by_id=6))

    command = press("b1")
    assert (command.command, command.target_task, command.number, command.trigger) == (
        "retry", target, 1, "check_run")
    assert press("b2") is Duplicate.BUTTON  # replayed under a new delivery id
    assert press("b3", check_run_id=556) is Duplicate.BUTTON  # the task's other check run
    assert press("b4", action="continue").command == "continue"  # another button
    assert press("b5", action="cancel", check_run_id=557) is None  # not one of the task's runs
    assert press("b6", task_id="f" * 32) is None  # not a task of this store
    assert press("b7", repo="acme/other") is None  # not on that repository
    assert press("b8", task_id=command.id) is None  # commands have no buttons
    store.release_button(command.id)  # refused: the button works again
    assert press("b9").command == "retry"


def test_pushed_work_is_found_from_the_issue_or_its_pull_request(store):
    task, other = acknowledged(store, 2)
    store.update(task, commit_sha="abc", pr_number=40, pr_url="https://github.com/acme/widgets/pull/40")
    assert [t.id for t in store.pushed_work_on("acme/widgets", 1)] == [task]
    assert [t.id for t in store.pushed_work_on("acme/widgets", 40)] == [task]
    assert store.pushed_work_on("acme/widgets", 2) == []


# Writers at once: the PostgreSQL store's do not take turns as SQLite's do.

def _at_once(count, call):
    barrier = threading.Barrier(count)

    def run(n):
        barrier.wait()
        return call(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_one_delivery_delivered_at_once_is_recorded_once(store):
    results = _at_once(6, lambda n: store.record_delivery("g1", "issue_comment", "created", new_task()))
    assert sum(isinstance(r, Duplicate) for r in results) == 5
    assert [r for r in results if r is Duplicate.DELIVERY] and len(store.list()) == 1


def test_one_comment_or_label_replayed_at_once_is_one_task(store):
    label_task = NewTask(trigger="label", repo="acme/widgets", installation_id=1, number=4,
                         comment_id=None, instruction="Resolve issue #4", requested_by="alice",
                         requested_by_id=5, label="async-code")
    labels = _at_once(6, lambda n: store.record_delivery(f"l{n}", "issues", "labeled", label_task))
    comments = _at_once(6, lambda n: store.record_delivery(f"c{n}", "issue_comment", "created",
                                                           new_task(5, comment_id=77)))
    assert sorted(map(str, labels)) == sorted(["Duplicate.LABEL"] * 5 + [str(next(
        t for t in labels if not isinstance(t, Duplicate)))])
    assert [r for r in comments if not isinstance(r, Duplicate)] and comments.count(Duplicate.COMMENT) == 5
    assert len(store.list()) == 2 and store.delivery_count() == 12


def test_a_task_cancelled_by_two_at_once_is_cancelled_once(store):
    ids = acknowledged(store, 1) + [store.record_delivery(
        f"g{n}", "issue_comment", "created", new_task(1, comment_id=100 + n)).id for n in range(4)]
    results = _at_once(4, lambda n: store.request_cancel("acme/widgets", 1, by=f"user{n}"))
    assert sorted(t.id for cancelled, _ in results for t in cancelled) == sorted(ids)
    assert {store.get(i).status for i in ids} == {CANCELLED}


# The SQLite store's own: handing out work (on PostgreSQL the job queue's) and its schema.

def test_unacknowledged_tasks_are_not_claimed(tmp_path):
    store = make_store(tmp_path)
    store.record_delivery("g1", "issue_comment", "created", new_task())
    assert store.claim_next("w") is None
    assert [t.number for t in store.unacknowledged()] == [1]


def test_claims_take_the_oldest_first_and_mark_it_running(tmp_path):
    store = make_store(tmp_path)
    first, second = acknowledged(store, 2)
    claimed = store.claim_next("host:1")
    assert (claimed.id, claimed.status, claimed.claimed_by) == (first, RUNNING, "host:1")
    assert claimed.started_at and (claimed.attempt, store.get(second).attempt) == (1, 0)
    assert store.claim_next("host:1").id == second
    assert store.claim_next("host:1") is None


def test_concurrent_threads_claim_each_task_exactly_once(tmp_path):
    store = make_store(tmp_path)
    ids = acknowledged(store, 40)
    claimed: list[str] = []
    lock = threading.Lock()

    def slot():
        while (task := store.claim_next(threading.current_thread().name)) is not None:
            with lock:
                claimed.append(task.id)

    threads = [threading.Thread(target=slot, name=f"s{n}") for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)


def _claim_all(path, queue):
    store = Store(path)
    got = []
    while (task := store.claim_next("proc")) is not None:
        got.append(task.id)
    queue.put(got)


def test_concurrent_processes_claim_each_task_exactly_once(tmp_path):
    store = make_store(tmp_path)
    ids = acknowledged(store, 30)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_claim_all, args=(store.path, queue)) for _ in range(3)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    queue.close()
    queue.join_thread()
    assert sorted(sum(results, [])) == sorted(ids)


def test_each_new_task_is_taken_for_acknowledgement_once(tmp_path):
    store = make_store(tmp_path)
    first = store.record_delivery("g1", "issue_comment", "created", new_task(1))
    second = store.record_delivery("g2", "issue_comment", "created", new_task(2))
    assert store.claim_for_acknowledgement("a:1").id == first.id
    assert store.claim_for_acknowledgement("b:2").id == second.id
    assert store.claim_for_acknowledgement("a:1") is None
    # Not yet acknowledged, so no slot may run them either.
    assert store.claim_next("a:1") is None


def test_heartbeat_touches_only_the_unfinished_tasks_of_its_holder(tmp_path):
    store = make_store(tmp_path)
    mine, done, theirs = acknowledged(store, 3)
    store.update(mine, claimed_by="a:1")
    store.update(theirs, claimed_by="b:2")
    store.finish(done, COMPLETED, claimed_by="a:1")
    store.heartbeat("a:1")
    assert store.get(mine).heartbeat_at and not store.get(done).heartbeat_at
    assert not store.get(theirs).heartbeat_at
    assert store.unfinished_ids() == {mine, theirs}


def test_one_task_at_a_time_per_issue_or_pull_request(tmp_path):
    store = make_store(tmp_path)
    first, second = acknowledged(store, 2)
    third = store.record_delivery("g3", "issue_comment", "created", new_task(1, comment_id=99))
    store.update(third.id, acknowledged_at=utcnow())
    assert store.claim_next("w").id == first  # issue 1
    assert store.claim_next("w").id == second  # issue 2: not held up by issue 1
    assert store.claim_next("w") is None  # the second request on issue 1 waits
    assert [t.id for t in store.ahead_on_same(third.id)] == [first]
    store.finish(first, COMPLETED)
    assert store.claim_next("w").id == third.id


def test_a_cancelled_task_is_never_claimed(tmp_path):
    store = make_store(tmp_path)
    cancelled, other = acknowledged(store, 1) + acknowledged(store, 1, repo="acme/other")
    store.request_cancel("acme/widgets", 1, by="carol")
    assert store.claim_next("w").id == other and store.claim_next("w") is None


def test_a_store_written_by_a_newer_version_is_refused(tmp_path):
    import sqlite3

    from app.store import SCHEMA_VERSION

    with sqlite3.connect(tmp_path / "t.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer async-code"):
        Store(tmp_path / "t.db").initialise()


def _store_of_an_older_schema(path, version: int, left_out: set[str]) -> None:
    """A store as an older version wrote it: without `left_out` columns, one task pending."""
    import re
    import sqlite3

    from app import store as store_module

    head, tasks_table, tail = re.split(r"(CREATE TABLE IF NOT EXISTS tasks \(.*?\n\);)",
                                       store_module._SCHEMA, flags=re.DOTALL)
    kept = "".join(line + "\n" for line in tasks_table.splitlines()
                   if not (m := re.match(r"\s+(\w+)\s", line)) or m[1] not in left_out)
    schema = head + re.sub(r",(\s*\);)", r"\1", kept) + tail  # the last column loses its comma
    db = sqlite3.connect(path)
    db.executescript(schema)
    db.execute("INSERT INTO deliveries VALUES ('g1', 'issue_comment', 'created', '2026-01-01')")
    db.execute("INSERT INTO tasks (id, delivery_guid, status, trigger, repo, installation_id, number, "
               "instruction, requested_by, created_at) VALUES ('t1', 'g1', 'pending', 'comment', "
               "'acme/widgets', 77, 7, 'x', 'alice', '2026-01-01T00:00:00+00:00')")
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    assert not left_out & {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    db.close()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 6])
def test_an_older_store_gains_the_columns_added_since(tmp_path, version):
    import sqlite3

    from app import store as store_module

    path = tmp_path / "old.db"
    added = set(store_module._ADDED_COLUMNS)
    costs = {"cache_write_tokens", "cache_read_tokens", "cost_usd", "stop_reason"}
    left_out = {1: added, 2: added - {"issue_author"}, 3: costs | {"model"}, 4: {"model"},
                6: {"attempt", "job_id"}}
    _store_of_an_older_schema(path, version, left_out[version])

    store = Store(path)
    store.initialise()

    task = store.get("t1")
    assert task.issue_author == ""
    assert (task.command, task.draft, task.label, task.cancel_requested_by) == (None, False, None, None)
    assert (task.cost_usd, task.stop_reason, task.model) == (None, None, None)
    store.update("t1", cost_usd=0.1234, cache_read_tokens=5, stop_reason="budget",
                 model="claude-haiku-4-5")
    assert store.get("t1").summary()["cost_usd"] == 0.1234
    assert store.get("t1").model == "claude-haiku-4-5"
    assert (task.attempt, task.job_id) == (0, None)
    assert store.request_cancel("acme/widgets", 7, by="alice")[0][0].id == "t1"
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION


def _start(store, task_id, worker="host:1"):
    """One more attempt at the task, as the store's runner takes it."""
    if isinstance(store, PostgresStore):
        return store.start_attempt(task_id, worker)
    return store.claim_next(worker)


def test_the_writes_of_an_attempt_are_refused_once_a_newer_one_exists(store):
    [task_id] = acknowledged(store, 1)
    first = _start(store, task_id)
    assert first.attempt == 1
    store.update(task_id, attempt=1, branch="async-code/1-x")
    store.require_current(task_id, 1)

    assert store.reattempt(task_id, 1)  # its worker was judged gone
    assert not store.reattempt(task_id, 1)  # decided once
    with pytest.raises(Superseded):  # waiting for the next attempt: nothing of the old one lands
        store.update(task_id, attempt=1, commit_sha="a" * 40)
    second = _start(store, task_id, "host:2")
    assert second.attempt == 2
    for write in (lambda: store.update(task_id, attempt=1, commit_sha="b" * 40),
                  lambda: store.finish(task_id, FAILED, attempt=1, error="slow"),
                  lambda: store.require_current(task_id, 1)):
        with pytest.raises(Superseded):
            write()
    store.update(task_id, attempt=2, commit_sha="c" * 40)
    store.finish(task_id, COMPLETED, attempt=2)
    with pytest.raises(Superseded):  # an ended task takes no more writes of any attempt
        store.update(task_id, attempt=2, pr_number=3)
    task = store.get(task_id)
    assert (task.status, task.commit_sha, task.branch, task.error, task.pr_number) == (
        COMPLETED, "c" * 40, "async-code/1-x", None, None)


def test_live_attempts_are_those_running_and_those_about_to_start(store):
    running, waiting, ended = acknowledged(store, 3)
    _start(store, running)
    store.finish(ended, COMPLETED)
    assert store.live_attempts() == {(running, 1), (running, 2), (waiting, 1)}
