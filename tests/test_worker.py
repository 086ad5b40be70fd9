"""The runner's threads, with the task execution replaced: slots survive crashing tasks."""

from __future__ import annotations

from app.settings import Settings
from app.store import COMPLETED, Store
from runner import worker
from runner.execute import Services
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
    services = Services(settings=Settings(), store=store, github=None, docker=None, anthropic=None)
    runner = worker.Runner(services, slots=1, poll_interval=0.02)
    runner.start()
    try:
        wait_until(lambda: store.get(second).status == COMPLETED, 10, "the second task to run")
    finally:
        runner.stop(timeout=5)
    assert ran == [first, second]
