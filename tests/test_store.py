"""The SQLite task store: one transaction per delivery, atomic claims."""

from __future__ import annotations

import multiprocessing
import threading

from app.store import COMPLETED, PENDING, RUNNING, Duplicate, NewTask, Store, utcnow


def new_task(number=1, repo="acme/widgets"):
    return NewTask(trigger="comment", repo=repo, installation_id=1, number=number, comment_id=number,
                   instruction="do it", requested_by="alice", requested_by_id=5)


def make_store(tmp_path):
    store = Store(tmp_path / "t.db")
    store.initialise()
    return store


def acknowledged(store, count, repo="acme/widgets"):
    ids = []
    for n in range(count):
        task = store.record_delivery(f"g-{repo}-{n}", "issue_comment", "created", new_task(n + 1, repo))
        store.update(task.id, acknowledged_at=utcnow(), status_comment_id=1000 + n)
        ids.append(task.id)
    return ids


def test_a_delivery_and_its_task_are_recorded_together(tmp_path):
    store = make_store(tmp_path)
    task = store.record_delivery("g1", "issue_comment", "created", new_task())
    assert store.get(task.id) == task and task.status == PENDING and len(task.id) == 32
    assert store.record_delivery("g1", "issue_comment", "created", new_task()) is Duplicate.DELIVERY
    assert store.record_delivery("g2", "issue_comment", "created", new_task()) is Duplicate.COMMENT
    assert len(store.list()) == 1 and store.delivery_count() == 2


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
    assert claimed.started_at
    assert store.claim_next("host:1").id == second
    assert store.claim_next("host:1") is None


def test_tasks_waiting_ahead_and_per_repository_count(tmp_path):
    store = make_store(tmp_path)
    ids = acknowledged(store, 3)
    acknowledged(store, 1, repo="acme/other")
    assert [store.waiting_ahead_of(i) for i in ids] == [0, 1, 2]
    assert store.queued_for_repo("acme/widgets") == 3
    store.claim_next("w")
    assert store.waiting_ahead_of(ids[2]) == 1 and store.queued_for_repo("acme/widgets") == 2


def test_json_fields_round_trip(tmp_path):
    store = make_store(tmp_path)
    [task_id] = acknowledged(store, 1)
    store.finish(task_id, COMPLETED, patches={"diff": "d", "files": []}, changed_files=["a.py"],
                 chat_history=[{"role": "user", "content": "x"}])
    task = store.get(task_id)
    assert task.patches == {"diff": "d", "files": []} and task.changed_files == ["a.py"]
    assert task.finished_at and task.status == COMPLETED


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


def test_a_store_written_by_a_newer_version_is_refused(tmp_path):
    import sqlite3

    import pytest

    from app.store import SCHEMA_VERSION

    with sqlite3.connect(tmp_path / "t.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer async-code"):
        Store(tmp_path / "t.db").initialise()


def test_a_store_of_schema_1_gains_the_issue_author(tmp_path):
    import sqlite3

    from app import store as store_module

    path = tmp_path / "old.db"
    old_schema = store_module._SCHEMA.replace("    issue_author      TEXT NOT NULL DEFAULT '',\n", "")
    db = sqlite3.connect(path)
    db.executescript(old_schema)
    db.execute("INSERT INTO deliveries VALUES ('g1', 'issue_comment', 'created', '2026-01-01')")
    db.execute("INSERT INTO tasks (id, delivery_guid, status, trigger, repo, installation_id, number, "
               "instruction, requested_by, created_at) VALUES ('t1', 'g1', 'pending', 'comment', "
               "'acme/widgets', 77, 7, 'x', 'alice', '2026-01-01T00:00:00+00:00')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    store = Store(path)
    store.initialise()

    assert store.get("t1").issue_author == ""
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
