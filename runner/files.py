"""The agent's file tool (view / create / str_replace / insert), working on the host copy of the
work tree that is bind-mounted into the sandbox.

The runner may be root on the host, and the agent can change the tree at any moment from inside
the sandbox (e.g. swap a directory for a symlink to /etc). So a path is checked twice: first
resolved and required to stay inside the tree, then opened one component at a time relative to
the tree's directory descriptor with O_NOFOLLOW, so nothing swapped in after the check is followed.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from runner.sandbox import MOUNT_POINT

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1024 * 1024
LISTED_PER_DIRECTORY = 1000
LISTED_PER_SUBDIRECTORY = 100
_SNIPPET_CONTEXT = 4
_MAX_OCCURRENCES_SHOWN = 10
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in the tree must fail fast instead of hanging.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class ToolError(Exception):
    """A request the tool refuses or cannot carry out; the message is shown to the model."""


def resolve_inside(root: Path, path: str, *, mount_point: str = MOUNT_POINT) -> Path:
    """Map a path given by the model to a host path inside `root`, with symlinks resolved.

    Relative paths are taken relative to the work tree; absolute paths must lie under the
    sandbox mount point. Raises ToolError for anything that leads outside the tree.
    """
    if not isinstance(path, str) or not path:
        raise ToolError("`path` must be a non-empty string")
    if "\0" in path:
        raise ToolError("`path` contains a NUL character")
    root = Path(os.path.realpath(root))
    mount_point = mount_point.rstrip("/") or "/"
    relative = path
    if PurePosixPath(path).is_absolute():
        if path != mount_point and not path.startswith(mount_point.rstrip("/") + "/"):
            raise ToolError(
                f"{path} is outside the work tree: absolute paths must be under {mount_point}"
            )
        relative = path[len(mount_point) :].lstrip("/")
    lexical = os.path.normpath(os.path.join(root, relative))
    if not _is_within(lexical, root):
        raise ToolError(f"{path} is outside the work tree: '..' may not leave {mount_point}")
    resolved = os.path.realpath(lexical)
    if not _is_within(resolved, root):
        raise ToolError(f"{path} goes through a symbolic link that points outside the work tree")
    return Path(resolved)


def _is_within(path: str, root: Path) -> bool:
    return os.path.commonpath([path, str(root)]) == str(root)


class FileEditor:
    """Carries out the model's file requests on the work tree at `root`."""

    def __init__(
        self,
        root: Path,
        *,
        owner: tuple[int, int] | None = None,
        mount_point: str = MOUNT_POINT,
        max_output: int = 30_000,
    ) -> None:
        self._root = Path(os.path.realpath(root))
        if not self._root.is_dir():
            raise ValueError(f"work tree {root} is not a directory")
        self._owner = owner
        self._mount_point = mount_point.rstrip("/") or "/"
        self._max_output = max_output

    def handle(self, request: dict) -> str:
        command = request.get("command")
        handlers = {
            "view": self._view,
            "create": self._create,
            "str_replace": self._str_replace,
            "insert": self._insert,
        }
        if command not in handlers:
            raise ToolError(f"unknown command {command!r}; use one of: {', '.join(handlers)}")
        path = _string_param(request, "path", command)
        target = resolve_inside(self._root, path, mount_point=self._mount_point)
        shown = self._display(target)
        try:
            return handlers[command](request, target, shown)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                raise ToolError(f"{shown}: the path goes through a symbolic link; not following it") from exc
            if exc.errno == errno.ENOTDIR:
                raise ToolError(f"{shown}: a parent of this path is not a directory") from exc
            if exc.errno == errno.EISDIR:
                raise ToolError(f"{shown} is a directory") from exc
            if exc.errno == errno.ENOENT:
                raise ToolError(f"{shown} does not exist") from exc
            log.warning("file tool %s on %s failed: %s", command, shown, exc)
            raise ToolError(f"{command} failed for {shown}: {exc.strerror or exc}") from exc

    def _view(self, request: dict, target: Path, shown: str) -> str:
        view_range = request.get("view_range")
        with self._parent_dir(target, create=False) as (parent, name):
            fd = os.open(name or ".", os.O_RDONLY | _FILE_FLAGS, dir_fd=parent)
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISDIR(mode):
                    if view_range is not None:
                        raise ToolError("`view_range` applies to files, not to directories")
                    return self._listing(fd, shown)
                text = self._read_text(fd, shown, strict=False)
            finally:
                os.close(fd)
        lines = _split_lines(text)
        if not lines:
            return f"{shown} is empty."
        start, end = 1, len(lines)
        if view_range is not None:
            start, end = _check_range(view_range, len(lines))
        numbered = "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(start, end + 1))
        header = f"Here's the result of running `cat -n` on {shown}:\n"
        return self._cap(header + numbered + "\n", hint="view a smaller `view_range`")

    def _create(self, request: dict, target: Path, shown: str) -> str:
        file_text = _string_param(request, "file_text", "create")
        with self._parent_dir(target, create=True) as (parent, name):
            if name is None:
                raise ToolError(f"{shown} is a directory")
            existed = _exists(parent, name)
            fd = os.open(name, os.O_RDWR | os.O_CREAT | _FILE_FLAGS, 0o644, dir_fd=parent)
            try:
                self._require_regular(fd, shown)
                self._write_all(fd, file_text.encode("utf-8"))
            finally:
                os.close(fd)
        return f"{'Overwrote' if existed else 'Created'} {shown}."

    def _str_replace(self, request: dict, target: Path, shown: str) -> str:
        old = _string_param(request, "old_str", "str_replace")
        new = request.get("new_str") or ""
        if not isinstance(new, str):
            raise ToolError("`new_str` must be a string")
        if not old:
            raise ToolError("`old_str` must not be empty")
        with self._open_existing(target, shown) as fd:
            text = self._read_text(fd, shown, strict=True)
            count = text.count(old)
            if count == 0:
                raise ToolError(f"No replacement was performed: `old_str` does not occur in {shown}.")
            if count > 1:
                lines = _occurrence_lines(text, old)
                listed = ", ".join(map(str, lines[:_MAX_OCCURRENCES_SHOWN]))
                more = ", ..." if len(lines) > _MAX_OCCURRENCES_SHOWN else ""
                raise ToolError(
                    f"No replacement was performed: `old_str` occurs {count} times in {shown} "
                    f"(lines {listed}{more}). Include more surrounding lines to make it unique."
                )
            at = text.index(old)
            edited = text[:at] + new + text[at + len(old) :]
            self._write_all(fd, edited.encode("utf-8"))
        first = text.count("\n", 0, at) + 1
        last = first + new.count("\n")
        return f"Edited {shown}. " + self._snippet(edited, shown, first, last)

    def _insert(self, request: dict, target: Path, shown: str) -> str:
        line = request.get("insert_line")
        if not isinstance(line, int) or isinstance(line, bool):
            raise ToolError("`insert_line` is required for `insert` and must be an integer")
        # Older versions of the tool name the inserted text `new_str`.
        key = "insert_text" if "insert_text" in request else "new_str"
        insert_text = _string_param(request, key, "insert")
        with self._open_existing(target, shown) as fd:
            text = self._read_text(fd, shown, strict=True)
            count = len(_split_lines(text))
            if not 0 <= line <= count:
                raise ToolError(
                    f"`insert_line` {line} is out of range: {shown} has {count} lines "
                    f"(use 0 to insert at the top, {count} to append)"
                )
            at = _line_end(text, line)
            separator = "\n" if at > 0 and text[at - 1] != "\n" else ""
            block = insert_text if insert_text.endswith("\n") else insert_text + "\n"
            edited = text[:at] + separator + block + text[at:]
            self._write_all(fd, edited.encode("utf-8"))
        added = block.count("\n")
        return f"Inserted {added} line(s) after line {line} of {shown}. " + self._snippet(
            edited, shown, line + 1, line + added
        )

    @contextmanager
    def _parent_dir(self, target: Path, *, create: bool) -> Iterator[tuple[int, str | None]]:
        """Yield (directory fd, final name) for `target`, walking down from the tree's root
        without following symlinks; `name` is None for the root itself."""
        parts = target.relative_to(self._root).parts
        fd = os.open(self._root, _DIR_FLAGS)
        try:
            for part in parts[:-1]:
                child = self._enter(fd, part, create=create)
                os.close(fd)
                fd = child
            yield fd, (parts[-1] if parts else None)
        finally:
            os.close(fd)

    def _enter(self, dir_fd: int, name: str, *, create: bool) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise
        except NotADirectoryError:
            # O_DIRECTORY | O_NOFOLLOW reports a symlink as "not a directory": say which it is.
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise OSError(errno.ELOOP, "symbolic link", name) from None
            raise
        try:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
        except FileExistsError:
            pass
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        self._chown(fd)
        return fd

    @contextmanager
    def _open_existing(self, target: Path, shown: str) -> Iterator[int]:
        with self._parent_dir(target, create=False) as (parent, name):
            if name is None:
                raise ToolError(f"{shown} is a directory")
            fd = os.open(name, os.O_RDWR | _FILE_FLAGS, dir_fd=parent)
            try:
                self._require_regular(fd, shown)
                yield fd
            finally:
                os.close(fd)

    def _require_regular(self, fd: int, shown: str) -> os.stat_result:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{shown} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{shown} is not a regular file")
        return info

    def _read_text(self, fd: int, shown: str, *, strict: bool) -> str:
        self._require_regular(fd, shown)
        chunks = []
        size = 0
        while chunk := os.read(fd, 64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise ToolError(
                    f"{shown} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; "
                    "inspect it with shell commands (head, grep, sed -n) instead"
                )
        data = b"".join(chunks)
        if b"\0" in data:
            raise ToolError(f"{shown} looks like a binary file (it contains NUL bytes)")
        try:
            return data.decode("utf-8", errors="strict" if strict else "replace")
        except UnicodeDecodeError as exc:
            raise ToolError(f"{shown} is not valid UTF-8 text; edit it with shell commands") from exc

    def _write_all(self, fd: int, data: bytes) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        self._chown(fd)

    def _chown(self, fd: int) -> None:
        if self._owner is None:
            return
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid) != self._owner:
            os.fchown(fd, *self._owner)

    def _listing(self, dir_fd: int, shown: str) -> str:
        # Bounded however large the directories are: at most LISTED_PER_DIRECTORY names are
        # read from each, and listing stops once the answer is full.
        lines: list[str] = []
        size = 0
        base = shown.rstrip("/")
        entries, more = _visible_entries(dir_fd, LISTED_PER_DIRECTORY)
        for name, is_dir in entries:
            lines.append(f"{base}/{name}/" if is_dir else f"{base}/{name}")
            size += len(lines[-1]) + 1
            if is_dir and size < self._max_output:
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue  # changed meanwhile; list what is there
                try:
                    children, more_children = _visible_entries(sub, LISTED_PER_SUBDIRECTORY)
                finally:
                    os.close(sub)
                inner = [f"{base}/{name}/{child}" + ("/" if child_is_dir else "")
                         for child, child_is_dir in children]
                if more_children:
                    inner.append(f"{base}/{name}/… (more entries; view {base}/{name} to list them)")
                lines.extend(inner)
                size += sum(len(line) + 1 for line in inner)
            if size >= self._max_output:
                break
        if more:
            lines.append(f"… (more than {LISTED_PER_DIRECTORY} entries in {shown}; list them with bash)")
        header = f"Files and directories up to 2 levels deep in {shown}, hidden items excluded:\n"
        return self._cap(header + "\n".join(lines) + "\n", hint="view a subdirectory")

    def _snippet(self, text: str, shown: str, first: int, last: int) -> str:
        lines = _split_lines(text)
        start = max(1, first - _SNIPPET_CONTEXT)
        end = min(len(lines), max(last, first) + _SNIPPET_CONTEXT)
        numbered = "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(start, end + 1))
        return self._cap(
            f"Lines {start}-{end} of {shown} now read:\n{numbered}\n"
            "Check that the change is as intended.\n",
            hint="view the file with a `view_range`",
        )

    def _cap(self, text: str, *, hint: str) -> str:
        if len(text) <= self._max_output:
            return text
        note = f"\n[output truncated at {self._max_output} characters; {hint}]\n"
        return text[: max(0, self._max_output - len(note))] + note

    def _display(self, target: Path) -> str:
        relative = target.relative_to(self._root).as_posix()
        if relative == ".":
            return self._mount_point
        return f"{self._mount_point.rstrip('/')}/{relative}"


def _string_param(request: dict, key: str, command: str) -> str:
    value = request.get(key)
    if not isinstance(value, str):
        raise ToolError(f"`{key}` is required for `{command}` and must be a string")
    return value


def _split_lines(text: str) -> list[str]:
    """Lines as `cat -n`, `grep -n` and `sed` count them: separated by "\\n" only."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _line_end(text: str, line: int) -> int:
    """Offset just after line `line` (1-based; 0 is the start of the text)."""
    at = 0
    for _ in range(line):
        newline = text.find("\n", at)
        if newline == -1:
            return len(text)
        at = newline + 1
    return at


def _check_range(view_range, line_count: int) -> tuple[int, int]:
    if (
        not isinstance(view_range, (list, tuple))
        or len(view_range) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in view_range)
    ):
        raise ToolError("`view_range` must be two integers [start, end]; end -1 means the last line")
    start, end = view_range
    if not 1 <= start <= max(line_count, 1):
        raise ToolError(f"`view_range` start {start} is out of range: the file has {line_count} lines")
    if end == -1 or end > line_count:
        end = line_count
    if end < start:
        raise ToolError(f"`view_range` end {end} is before start {start}")
    return start, end


def _occurrence_lines(text: str, needle: str) -> list[int]:
    lines = []
    at = text.find(needle)
    while at != -1:
        lines.append(text.count("\n", 0, at) + 1)
        at = text.find(needle, at + 1)
    return lines


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _visible_entries(dir_fd: int, limit: int) -> tuple[list[tuple[str, bool]], bool]:
    """Up to `limit` entries not starting with a dot, sorted, and whether there were more."""
    found: list[tuple[str, bool]] = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if len(found) == limit:
                return sorted(found), True
            found.append((entry.name, entry.is_dir(follow_symlinks=False)))
    return sorted(found), False
