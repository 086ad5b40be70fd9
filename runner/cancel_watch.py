"""Notice a `cancel` for a running task, whichever process holds the task, that the worker
running it is shutting down, or that its attempt was superseded.

The command is answered by whichever process acknowledges it, which sets a flag in the store
(and, on PostgreSQL, asks the job queue to abort the task's job); the process running the task
polls that flag, and the job's abort reason when it runs as a job, and stops the sandbox.

Given the attempt it watches, it also stops the sandbox once that attempt is no longer the
task's running one: a worker wrongly judged gone (only slow) then stops its agent at once,
instead of letting it work on until its next write is refused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.store import Store, Superseded

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
# What a job's abort reason may be (runner/queue.py maps the queue's onto these).
CANCEL, SHUTDOWN = "cancel", "shutdown"
# Who a cancel is from when the queue's abort came without the store's flag (an operator
# aborting the job with the queue's own tools).
AN_OPERATOR = "an operator"


class HandedBack(Exception):
    """The worker is shutting down: the sandbox was stopped, and the task goes back to the queue
    for another worker to run."""


def _never() -> str | None:
    return None


class CancelWatch:
    """Polls the store in a thread of its own; calls `on_cancel` once when the task is cancelled."""

    def __init__(self, store: Store, task_id: str, on_cancel: Callable[[], None], *,
                 interval: float = POLL_INTERVAL, abort_reason: Callable[[], str | None] = _never,
                 attempt: int | None = None):
        self._store, self._task_id, self._on_cancel = store, task_id, on_cancel
        self._abort_reason = abort_reason
        self._attempt = attempt
        self.superseded = False
        self._stopped_sandbox = False
        self.handed_back = False
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cancel-watch", daemon=True)
        self.cancelled_by: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def check(self) -> str | None:
        """Look now; who cancelled the task (and `on_cancel` called, once), or None. Raises
        HandedBack (`on_cancel` called) when the worker running the task is shutting down."""
        reason = self._abort_reason()
        if reason == SHUTDOWN:
            if not self.handed_back:
                self.handed_back = True
                log.info("task %s: the worker is shutting down; stopping its sandbox", self._task_id)
                self._stop_sandbox()
            raise HandedBack(self._task_id)
        if self.cancelled_by is None:
            try:
                by = self._store.cancel_requested(self._task_id)
            except Exception:
                log.exception("task %s: could not read whether it was cancelled", self._task_id)
                by = None
            if by is None and reason == CANCEL:
                by = AN_OPERATOR
            if by is not None:
                self.cancelled_by = by
                log.info("task %s cancelled by %s; stopping its sandbox", self._task_id, by)
                self._stop_sandbox()
        if self._attempt is not None and not self.superseded:
            try:
                self._store.require_current(self._task_id, self._attempt)
            except Superseded:
                self.superseded = True
                log.info("task %s: attempt %d was superseded; stopping its sandbox",
                         self._task_id, self._attempt)
                self._stop_sandbox()
            except Exception:
                log.exception("task %s: could not read whether its attempt is current",
                              self._task_id)
        return self.cancelled_by

    def _stop_sandbox(self) -> None:
        if not self._stopped_sandbox:
            self._stopped_sandbox = True
            self._on_cancel()

    def _watch(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                if self.check() is not None or self.superseded:
                    return
            except HandedBack:
                return
