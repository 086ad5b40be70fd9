"""The runner's threads: an acknowledger, N execution slots, a heartbeat and a recovery loop.

The acknowledger and the slots take work from the store (woken at once by intake in this
process, else by polling). The acknowledger never waits for a slot, so a new request gets its
👀 and "queued" comment promptly even while every slot is busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.store import FAILED, PENDING, RUNNING, Store, Superseded, Task
from runner.acknowledge import acknowledge
from runner.cancel_watch import HandedBack
from runner.execute import INTERNAL_ERROR, execute
from runner.services import Services
from runner import unconfigured
from runner.text import github_web_url
from runner.recovery import HEARTBEAT_INTERVAL, RECOVERY_INTERVAL, recover, worker_identity

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5


class Runner:
    def __init__(self, services: Services, slots: int, *, poll_interval: float = POLL_INTERVAL):
        self._services = services
        self._slots = slots
        self._poll = poll_interval
        self._stop = threading.Event()
        # Set when this process records or acknowledges a task, so the next loop need not wait
        # out its poll interval; tasks recorded by other processes are found by polling.
        self._new_task = threading.Event()
        self._queued = threading.Event()
        self._threads: list[threading.Thread] = []
        self.worker_id = worker_identity()

    def start(self) -> None:
        self._spawn("heartbeat", self._heartbeat_loop)
        self._spawn("recovery", self._recovery_loop)
        self._spawn("acknowledger", self._acknowledge_loop)
        for slot in range(self._slots):
            self._spawn(f"slot-{slot + 1}", self._slot_loop)

    def task_recorded(self) -> None:
        """Called by intake after it stored a task: wake the acknowledger now."""
        self._new_task.set()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._new_task.set()
        self._queued.set()
        for thread in self._threads:
            thread.join(timeout)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _heartbeat_loop(self) -> None:
        # Its own thread: slow clean-up must never let this process's tasks look dead.
        while not self._stop.wait(HEARTBEAT_INTERVAL):
            try:
                self._services.store.heartbeat(self.worker_id)
            except Exception:
                log.exception("heartbeat failed")

    def _recovery_loop(self) -> None:
        # Fails the tasks of processes that died and removes what they left behind.
        while not self._stop.wait(RECOVERY_INTERVAL):
            try:
                recover(self._services, starting=False)
            except Exception:
                log.exception("recovery failed")

    def _acknowledge_loop(self) -> None:
        settings, store = self._services.settings, self._services.store
        while not self._stop.is_set():
            try:
                task = store.claim_for_acknowledgement(self.worker_id)
            except Exception:
                log.exception("reading new tasks failed")
                task = None
            if task is None:
                self._new_task.wait(self._poll)
                self._new_task.clear()
                continue
            self._guard(task, lambda t=task: acknowledge(
                t, github=self._services.github, store=store, slug=settings.github_app_slug,
                max_queue=settings.max_queue_per_repo, trigger_label=settings.trigger_label,
                web_url=github_web_url(settings.github_api_url), settings=settings))
            self._queued.set()

    def _slot_loop(self) -> None:
        store: Store = self._services.store
        while not self._stop.is_set():
            try:
                task = store.claim_next(self.worker_id)
            except Exception:
                log.exception("claiming a task failed")
                task = None
            if task is None:
                self._queued.wait(self._poll)
                self._queued.clear()
                continue
            if missing := self._services.settings.missing_for_tasks():
                self._guard(task, lambda t=task: unconfigured.decline(t, self._services, missing))
                continue
            log.info("task %s started on %s", task.id, threading.current_thread().name)
            self._guard(task, lambda t=task: execute(t, self._services))

    def _guard(self, task: Task, work: Callable[[], None]) -> None:
        guard(self._services, task, work)


def guard(services: Services, task: Task, work: Callable[[], None]) -> None:
    """Run `work` for `task`. One task's crash must never stop a slot, nor leave the task
    pending or running; a task handed back at shutdown goes on to the queue."""
    try:
        work()
    except HandedBack:
        raise
    except Superseded:
        log.info("task %s: attempt %d was superseded by a newer one", task.id, task.attempt)
    except Exception:
        log.exception("task %s: unexpected error", task.id)
        try:
            current = services.store.get(task.id)
            if current and current.status in (PENDING, RUNNING):
                # A running task's failure is this attempt's to record, if it still holds it.
                services.store.finish(task.id, FAILED, error=INTERNAL_ERROR,
                                      attempt=task.attempt if task.status == RUNNING else None)
        except Superseded:
            log.info("task %s: attempt %d was superseded by a newer one", task.id, task.attempt)
        except Exception:
            log.exception("task %s: could not record the failure", task.id)
