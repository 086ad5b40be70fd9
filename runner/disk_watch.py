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

from runner.tree_removal import restore_owner_permissions

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0
BLOCK = 512  # st_blocks counts 512-byte units on Linux
ENTRY_MINIMUM = 4096  # a block and an inode: what an empty file or a short link really costs


def disk_usage(tree: Path) -> int:
    """Bytes the tree takes on disk, never following a symlink; every entry is charged at least
    ENTRY_MINIMUM, since empty files and short links cost inodes the blocks do not show.

    A name the agent removes or replaces while the walk runs is skipped. A directory the agent
    made unreadable (possible when the service is not root, since the sandbox then shares its
    uid) gets its owner's permissions back; one that stays unreadable raises Unmeasurable.
    """
    total = _charge(os.lstat(tree))
    pending = [os.fspath(tree)]
    while pending:
        directory = pending.pop()
        try:
            entries = os.scandir(directory)
        except FileNotFoundError:
            continue
        except PermissionError:
            _restore_owner_permissions(directory)
            try:
                entries = os.scandir(directory)
            except OSError as error:
                raise Unmeasurable(f"{directory} cannot be read ({error.strerror})") from None
        with entries:
            for entry in entries:
                try:
                    status = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += _charge(status)
                if stat.S_ISDIR(status.st_mode):
                    pending.append(entry.path)
    return total


class Unmeasurable(Exception):
    """A part of the tree cannot be read, so its size is not known."""


def _charge(status: os.stat_result) -> int:
    return max(status.st_blocks * BLOCK, ENTRY_MINIMUM)


def _restore_owner_permissions(directory: str) -> None:
    parent, name = os.path.split(directory)
    parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        restore_owner_permissions(parent_fd, name)
    except OSError:
        pass  # stays unreadable: the caller says so
    finally:
        os.close(parent_fd)


class DiskWatch:
    """Measures a tree in a thread of its own; calls `on_exceeded` once if it grows too big."""

    def __init__(self, tree: Path, limit: int, on_exceeded: Callable[[], None], *,
                 interval: float = CHECK_INTERVAL):
        self._tree, self._limit, self._on_exceeded = tree, limit, on_exceeded
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="disk-watch", daemon=True)
        self.exceeded_with: int | None = None  # the usage that was over the limit
        self.problem: str | None = None  # why the sandbox was stopped, for the person who asked

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def check(self) -> bool:
        """Measure now; True (and `on_exceeded` called, once) when the tree is over its limit."""
        if self.problem is not None:
            return True
        try:
            usage = disk_usage(self._tree)
        except Unmeasurable as error:
            self.problem = f"the work tree could not be measured: {error}"
        else:
            if usage <= self._limit:
                return False
            self.exceeded_with = usage
            self.problem = f"the work tree grew to {_size(usage)}"
        log.warning("work tree %s: %s; stopping the sandbox", self._tree, self.problem)
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


def _size(count: int) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if count >= factor:
            return f"{count / factor:.1f} {unit}"
    return f"{count} bytes"
