"""Delete a work tree, whatever the agent left in it.

The agent decides the tree's shape: directories nested deeper than Python recurses or than a
path may be long, directories without read, write or search permission, symlinks to anything.
`shutil.rmtree` recurses (a deep tree raises RecursionError) and works with whole paths (a deep
tree raises ENAMETOOLONG). This removal never recurses and never uses a path longer than two
names: it empties the root's subdirectories one level at a time, moving their subdirectories up
into the root. It opens nothing through a symlink, so nothing outside the tree is touched, and
it goes on past what it cannot remove, reporting it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(root: Path) -> bool:
    """Delete `root` and everything below it. True when it is gone; failures are logged."""
    root = Path(root)
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            os.unlink(root)
            return True
        return _remove_directory(root)
    except FileNotFoundError:
        return True
    except OSError as error:
        log.warning("could not remove %s: %s", root, error.strerror)
        return False


def _remove_directory(root: Path) -> bool:
    parent_fd = os.open(root.parent, _DIRECTORY_FLAGS)
    try:
        root_fd = _open_directory(parent_fd, root.name)
        try:
            emptied = _empty(root_fd, root)
        finally:
            os.close(root_fd)
        if emptied:
            os.rmdir(root.name, dir_fd=parent_fd)
        return emptied
    finally:
        os.close(parent_fd)


def _empty(root_fd: int, root: Path) -> bool:
    """Remove everything in the directory `root_fd`; False if something would not go."""
    hoisted = itertools.count()
    stuck: set[str] = set()
    while True:
        progress = False
        for entry in _entries(root_fd):
            if entry.name in stuck:
                continue
            if _remove_entry(root_fd, entry, hoisted, root):
                progress = True
            else:
                stuck.add(entry.name)
        if not progress:
            return not stuck


def _remove_entry(root_fd: int, entry: os.DirEntry, hoisted: itertools.count, root: Path) -> bool:
    """Remove one entry of the root; a directory is emptied one level, its subdirectories
    moved up into the root to be handled by a later pass."""
    try:
        if not entry.is_dir(follow_symlinks=False):
            os.unlink(entry.name, dir_fd=root_fd)
            return True
        child_fd = _open_directory(root_fd, entry.name)
        try:
            for inner in _entries(child_fd):
                if inner.is_dir(follow_symlinks=False):
                    # Moving a directory rewrites its "..": it must be writable itself.
                    os.close(_open_directory(child_fd, inner.name))
                    _move_up(child_fd, inner.name, root_fd, hoisted)
                else:
                    os.unlink(inner.name, dir_fd=child_fd)
        finally:
            os.close(child_fd)
        os.rmdir(entry.name, dir_fd=root_fd)
        return True
    except FileNotFoundError:
        return True
    except OSError as error:
        log.warning("could not remove %s/%s: %s", root, entry.name, error.strerror)
        return False


def _move_up(child_fd: int, name: str, root_fd: int, hoisted: itertools.count) -> None:
    while True:
        target = f".removing-{next(hoisted)}"
        try:
            os.rename(name, target, src_dir_fd=child_fd, dst_dir_fd=root_fd)
            return
        except OSError as error:
            # The agent has an entry of that name already: take the next name.
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise


def _entries(directory_fd: int) -> Iterator[os.DirEntry]:
    # One at a time, as the directory is read: a directory of millions of names is never held
    # in memory. Removing or adding names meanwhile is fine; the caller passes again until done.
    with os.scandir(directory_fd) as entries:
        yield from entries


def _open_directory(parent_fd: int, name: str) -> int:
    """Open a subdirectory for listing and removal, giving it back the owner's permissions
    the agent may have taken away (only needed when the service is not root)."""
    try:
        fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
    except PermissionError:
        restore_owner_permissions(parent_fd, name)
        fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
    mode = os.fstat(fd).st_mode
    if stat.S_IMODE(mode) & stat.S_IRWXU != stat.S_IRWXU:
        with contextlib.suppress(PermissionError):  # another user's: removal will say so
            os.fchmod(fd, stat.S_IMODE(mode) | stat.S_IRWXU)
    return fd


def restore_owner_permissions(parent_fd: int, name: str) -> None:
    """Give a directory its owner's read, write and search permissions back, if we own it."""
    # O_PATH opens a directory the caller may not read; O_NOFOLLOW makes sure it is not a
    # symlink. chmod through /proc changes that very directory, never what a link names.
    fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        mode = os.fstat(fd).st_mode
        with contextlib.suppress(PermissionError):
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(mode) | stat.S_IRWXU)
    finally:
        os.close(fd)
