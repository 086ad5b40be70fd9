"""The runner's threads, with the task execution replaced: slots survive crashing tasks."""

from __future__ import annotations

import pytest

from app.settings import Settings
from app.store import COMPLETED, Store
from runner import worker
from runner.sandbox import SandboxUser
from runner.services import Services
from tests.conftest import wait_until
from tests.test_store import acknowledged


def test_a_crashing_task_does_not_stop_its_slot(tmp_path, monkeypatch):
    store = Store(tmp_path / "t.db")
    store.initialise()
    first, second = acknowledged(store, 2)
    ran = []

    def execute(task, services):
        ran.append(task.id)
        if task.id == first:
            raise RuntimeError("boom")
        store.finish(task.id, COMPLETED)

    monkeypatch.setattr(worker, "execute", execute)
    services = Services(settings=Settings(anthropic_api_key="sk-test"), store=store, github=None,
                        docker=None, anthropic=None, instance="worker-test",
                        sandbox=SandboxUser("61000:61000", (61000, 61000)))
    runner = worker.Runner(services, slots=1, poll_interval=0.02)
    runner.start()
    try:
        wait_until(lambda: store.get(second).status == COMPLETED, 10, "the second task to run")
    finally:
        runner.stop(timeout=5)
    assert ran == [first, second]
    crashed = store.get(first)
    assert (crashed.status, crashed.error) == ("failed", worker.INTERNAL_ERROR)


def test_the_runner_beats_for_its_tasks_and_runs_recovery(tmp_path, monkeypatch):
    store = Store(tmp_path / "t.db")
    store.initialise()
    [task_id] = acknowledged(store, 1)
    recovered = []
    monkeypatch.setattr(worker, "HEARTBEAT_INTERVAL", 0.05)
    monkeypatch.setattr(worker, "RECOVERY_INTERVAL", 0.05)
    monkeypatch.setattr(worker, "recover", lambda services, starting: recovered.append(starting))
    monkeypatch.setattr(worker, "execute", lambda task, services: None)  # holds it as running
    services = Services(settings=Settings(anthropic_api_key="sk-test"), store=store, github=None,
                        docker=None, anthropic=None, instance="worker-test",
                        sandbox=SandboxUser("61000:61000", (61000, 61000)))
    runner = worker.Runner(services, slots=1, poll_interval=0.02)
    store.update(task_id, heartbeat_at=None)
    runner.start()
    try:
        wait_until(lambda: store.get(task_id).claimed_by == runner.worker_id, 10, "the claim")
        store.update(task_id, heartbeat_at=None)
        wait_until(lambda: store.get(task_id).heartbeat_at, 10, "a heartbeat")
        wait_until(lambda: recovered, 10, "a recovery pass")
    finally:
        runner.stop(timeout=5)
    assert set(recovered) == {False}


def test_without_the_model_key_tasks_are_declined_not_run(tmp_path, monkeypatch):
    store = Store(tmp_path / "t.db")
    store.initialise()
    [task_id] = acknowledged(store, 1)
    declined = []

    def decline(task, services, missing):
        declined.append((task.id, missing))
        store.finish(task.id, "failed", error="declined")

    monkeypatch.setattr(worker, "execute", lambda task, services: pytest.fail("a task ran"))
    monkeypatch.setattr(worker.unconfigured, "decline", decline)
    services = Services(settings=Settings(), store=store, github=None, docker=None, anthropic=None,
                        instance="worker-test", sandbox=SandboxUser("61000:61000", (61000, 61000)))
    runner = worker.Runner(services, slots=1, poll_interval=0.02)
    runner.start()
    try:
        wait_until(lambda: store.get(task_id).status == "failed", 10, "the task to be declined")
    finally:
        runner.stop(timeout=5)
    assert declined == [(task_id, ["ANTHROPIC_API_KEY"])]
