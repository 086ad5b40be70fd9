"""The watch over a running attempt stops its sandbox once the attempt is superseded: a worker
judged gone while it was only slow stops its agent at once, rather than at its next write."""

from __future__ import annotations

import threading

from app.store import NewTask, Store
from runner.cancel_watch import CancelWatch


def running_task(tmp_path):
    store = Store(tmp_path / "tasks.db")
    store.initialise()
    task = store.record_delivery("g1", "issue_comment", "created", NewTask(
        trigger="comment", repo="acme/widgets", installation_id=1, number=7, comment_id=1,
        instruction="x", requested_by="alice", requested_by_id=9))
    store.mark_queued(task.id, status_comment_id=5, check_run_id=None)
    claimed = store.claim_next("host:1")
    assert (claimed.id, claimed.attempt) == (task.id, 1)
    return store, claimed


def test_a_superseded_attempt_has_its_sandbox_stopped(tmp_path):
    store, task = running_task(tmp_path)
    stopped = []
    watch = CancelWatch(store, task.id, lambda: stopped.append(True), attempt=task.attempt)
    assert watch.check() is None and stopped == [] and not watch.superseded
    assert store.reattempt(task.id, task.attempt)  # judged gone: its next attempt may start
    assert watch.check() is None  # no cancel: a superseded attempt is no cancel
    assert watch.superseded and stopped == [True]
    watch.check()
    assert stopped == [True]  # once


def test_the_watch_thread_notices_it_without_being_asked(tmp_path):
    store, task = running_task(tmp_path)
    stopped = threading.Event()
    watch = CancelWatch(store, task.id, stopped.set, attempt=task.attempt, interval=0.05)
    watch.start()
    try:
        assert not stopped.wait(0.3)
        assert store.reattempt(task.id, task.attempt)
        assert stopped.wait(10)
    finally:
        watch.stop()
    assert watch.superseded


def test_without_an_attempt_the_watch_minds_only_cancels(tmp_path):
    store, task = running_task(tmp_path)
    stopped = []
    watch = CancelWatch(store, task.id, lambda: stopped.append(True))
    assert store.reattempt(task.id, task.attempt)
    assert watch.check() is None and stopped == [] and not watch.superseded
