"""Notice a `cancel` for a running task, whichever process holds the task.

The command is answered by whichever process acknowledges it, which only sets a flag in the
store; the process running the task polls that flag and stops the sandbox.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.store import Store

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0


class CancelWatch:
    """Polls the store in a thread of its own; calls `on_cancel` once when the task is cancelled."""

    def __init__(self, store: Store, task_id: str, on_cancel: Callable[[], None], *,
                 interval: float = POLL_INTERVAL):
        self._store, self._task_id, self._on_cancel = store, task_id, on_cancel
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
        """Look now; who cancelled the task (and `on_cancel` called, once), or None."""
        if self.cancelled_by is None:
            try:
                by = self._store.cancel_requested(self._task_id)
            except Exception:
                log.exception("task %s: could not read whether it was cancelled", self._task_id)
                return None
            if by is not None:
                self.cancelled_by = by
                log.info("task %s cancelled by %s; stopping its sandbox", self._task_id, by)
                self._on_cancel()
        return self.cancelled_by

    def _watch(self) -> None:
        while not self._stopped.wait(self._interval):
            if self.check() is not None:
                return
