"""Keep a sandbox from filling the host's disk through its work tree.

The work tree is a bind mount, which no Docker storage option limits. So the runner measures it
from outside, the way `du` does, every few seconds while the sandbox runs, and once more after;
when it outgrows its limit the sandbox is removed and the task fails with that reason.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0
BLOCK = 512  # st_blocks counts 512-byte units on Linux


def disk_usage(tree: Path) -> int:
    """Bytes the tree takes on disk: files, directories and symlinks, never following one.

    A name the agent removes or replaces while the walk runs is skipped.
    """
    total = 0
    pending = [os.fspath(tree)]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        status = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += status.st_blocks * BLOCK
                    if stat.S_ISDIR(status.st_mode):
                        pending.append(entry.path)
        except OSError:
            continue  # gone, or no permission: the sandbox user's business, counted as empty
    return total


class DiskWatch:
    """Measures a tree in a thread of its own; calls `on_exceeded` once if it grows too big."""

    def __init__(self, tree: Path, limit: int, on_exceeded: Callable[[], None], *,
                 interval: float = CHECK_INTERVAL):
        self._tree, self._limit, self._on_exceeded = tree, limit, on_exceeded
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="disk-watch", daemon=True)
        self.exceeded_with: int | None = None  # the usage that was over the limit

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def check(self) -> bool:
        """Measure now; True (and `on_exceeded` called, once) when the tree is over its limit."""
        if self.exceeded_with is not None:
            return True
        usage = disk_usage(self._tree)
        if usage <= self._limit:
            return False
        self.exceeded_with = usage
        log.warning("work tree %s takes %d bytes, over its limit of %d: stopping the sandbox",
                    self._tree, usage, self._limit)
        self._on_exceeded()
        return True

    def _watch(self) -> None:
        wait = self._interval
        while not self._stopped.wait(wait):
            started = time.monotonic()
            if self.check():
                return
            # A huge tree takes long to walk: never spend more than a fifth of the time on it.
            wait = max(self._interval, 4 * (time.monotonic() - started))
