"""What the runner proposes from the agent's work tree, read by the runner itself, never by git.

Host git never opens the work tree: any file in it can be the agent's, and git reads config,
attributes, hooks and nested repositories from a tree it is pointed at. So the runner walks the
tree, never following a symlink, and turns it into index entries for `git update-index`:

- every `.git` entry at any depth is skipped; other spellings git treats as `.git` (`git~1`,
  `.git.`, `notes\\.git`, …) are left out;
- a directory holding a repository the agent created is taken as plain files;
- submodules (gitlinks) are copied from HEAD unchanged; whatever the agent put at or under a
  submodule's path is left out, and so is a file where a directory holding one was;
- `.gitignore` rules apply as `git add --all` applies them (git decides, from copies: see
  `runner/ignore_rules.py`): untracked ignored paths stay out, tracked files are always taken;
- what git or GitHub would refuse (sockets, devices, symlinked `.gitmodules`, files over GitHub's
  100 MB limit) is left out, and so are changes to `.github/workflows` (see `touches_workflows`;
  applied once contents are hashed, in `runner/workspace.py`).

Everything left out is reported with a reason, so the pull request can say so. Where the
agent's version of a tracked path is left out, HEAD's version stays: leaving a thing out never
deletes it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


REGULAR = "100644"
EXECUTABLE = "100755"
SYMLINK = "120000"
GITLINK = "160000"

WORKFLOWS = b".github/workflows"
GITHUB_FILE_LIMIT = 100 * 1024 * 1024  # GitHub refuses pushes with a larger file
GITIGNORE_LIMIT = 8 * 1024 * 1024  # runner/ignore_rules.py refuses more in all
LEFT_OUT_LISTED = 1000

# Code points HFS+ ignores when it compares names, so ".g\u200cit" is ".git" there (git's utf8.c).
_HFS_IGNORED = frozenset(
    [*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)


@dataclass(frozen=True)
class Tracked:
    """One entry of HEAD's tree, as `git ls-tree -r` lists it."""

    mode: str
    sha: str
    size: int | None = None  # of a blob; None for a submodule


@dataclass(frozen=True)
class Entry:
    """A path to propose: a file or symlink read from the tree, or an entry kept from HEAD."""

    mode: str
    path: bytes  # relative, "/"-separated, as git stores it
    source: Path | None = None  # the file or symlink on disk, to be read
    size: int = 0
    sha: str | None = None  # set instead of `source` for what is kept as HEAD has it


class TooManyNewFiles(Exception):
    """The walk found more untracked files to propose than it was allowed to collect."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit:,} new files")
        self.limit = limit


@dataclass(frozen=True)
class LeftOut:
    path: str
    reason: str


@dataclass
class Snapshot:
    entries: list[Entry] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)  # at most LEFT_OUT_LISTED of them
    left_out_count: int = 0

    def leave_out(self, path: str, reason: str) -> None:
        self.left_out_count += 1
        if len(self.left_out) < LEFT_OUT_LISTED:
            self.left_out.append(LeftOut(path, reason))


def is_dot_git(name: str) -> bool:
    """Whether git (or GitHub's checks) treats this one path component as `.git`.

    Mirrors git's `is_ntfs_dotgit` and `is_hfs_dotgit`, which its fsck and `verify_path` apply
    on every platform: `.git` in any case, with trailing dots or spaces, an NTFS stream suffix,
    the 8.3 short name `git~1`, HFS+-ignored code points anywhere, and any of these after a
    backslash, which NTFS reads as a directory separator.
    """
    return any(_hfs_folded(piece) == ".git" or _ntfs_trailer(piece.lower(), (".git", "git~1"))
               for piece in name.split("\\"))


def is_symlink_git_refuses(name: str) -> bool:
    """A symlink named like `.gitmodules`: git will not index it and GitHub refuses it.

    Mirrors git's `is_hfs_dotgitmodules` and `is_ntfs_dotgitmodules`, 8.3 short names included
    (`gitmod~1` to `gitmod~4`, and the hashed fall-back such as `gi7eba~1`).
    """
    for piece in name.split("\\"):
        lowered = piece.lower()
        if (_hfs_folded(piece) == ".gitmodules" or _ntfs_trailer(lowered, (".gitmodules",))
                or any(_ntfs_trailer(lowered, (f"gitmod~{n}",)) for n in "1234")
                or _is_hashed_short_name(lowered, "gi7eba")):
            return True
    return False


def _hfs_folded(name: str) -> str:
    return "".join(c for c in name if ord(c) not in _HFS_IGNORED).lower()


def _ntfs_trailer(lowered: str, stems: tuple[str, ...]) -> bool:
    """`lowered` is one of `stems` followed only by dots and spaces, up to its end or ":"."""
    return any(lowered.startswith(stem) and lowered[len(stem):].split(":", 1)[0].strip(". ") == ""
               for stem in stems)


def _is_hashed_short_name(lowered: str, prefix: str) -> bool:
    """NTFS's fall-back 8.3 name: up to six characters of `prefix`, "~", then digits (the
    first 1-9), eight characters in all; git's `is_ntfs_dot_generic` checks it this way."""
    head = lowered[:8]
    stem, tilde, digits = head.partition("~")
    return (len(head) == 8 and bool(tilde) and len(stem) <= 6 and stem == prefix[:len(stem)]
            and digits.isdigit() and digits[0] != "0" and _ntfs_trailer(lowered, (head,)))


def touches_workflows(path: bytes) -> bool:
    """Whether changing `path` needs the App's `workflows` permission, which async-code lacks.

    GitHub refuses a push from an App without it that adds, changes or deletes anything
    under `.github/workflows`.
    """
    return path == WORKFLOWS or path.startswith(WORKFLOWS + b"/")


def file_mode(st_mode: int) -> str | None:
    """The git mode of a file as lstat describes it; None for what git cannot hold."""
    if stat.S_ISLNK(st_mode):
        return SYMLINK
    if stat.S_ISREG(st_mode):
        return EXECUTABLE if st_mode & stat.S_IXUSR else REGULAR
    return None


class IgnoreRules(Protocol):
    """Applies .gitignore rules; `runner/ignore_rules.py` has git do it."""

    def enter(self, directory: bytes, rules: bytes | None) -> None: ...

    def ignored(self, directory: bytes, children: list[tuple[bytes, bool]]) -> set[bytes]: ...


def _read_gitignore(path: Path) -> bytes | None:
    # Like git since 2.32, a symlinked .gitignore is not followed; and only a regular file is
    # read, so a FIFO or a device never blocks the walk.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read(GITIGNORE_LIMIT + 1)


def take(tree: Path, head: Mapping[bytes, Tracked], rules: IgnoreRules, *,
         max_new_files: int | None = None) -> Snapshot:
    """Everything under `tree` that a pull request should propose, against HEAD's `head`.

    Raises TooManyNewFiles as soon as more than `max_new_files` untracked files are found, so
    a tree of millions of files costs neither the time nor the memory of listing them all.
    """
    gitlinks = {path for path, tracked in head.items() if tracked.mode == GITLINK}
    gitlink_parents = {parent for path in gitlinks for parent in _parents(path)}
    tracked_dirs = {parent for path in head for parent in _parents(path)}
    snapshot = Snapshot()
    kept = set(gitlinks)  # paths proposed as HEAD has them
    new_files = 0

    # Depth-first with an explicit stack: an agent can nest directories deeper than Python recurses.
    # Each item: the directory, its path in the tree, and whether an ignore rule excluded it
    # (then only tracked files are taken from it, as `git add --all` does).
    pending: list[tuple[Path, str, bool]] = [(tree, "", False)]
    while pending:
        directory, relative_dir, excluded = pending.pop()
        encoded_dir = os.fsencode(relative_dir)
        if not excluded:
            rules.enter(encoded_dir, _read_gitignore(directory / ".gitignore"))
        # A batch at a time: a directory of millions of names never sits in memory whole.
        for batch in _batches(directory):
            listing = []
            for name, status in batch:
                if name.lower() == ".git":
                    continue  # a repository of the agent's own: never part of the proposal
                if is_dot_git(name):  # another spelling git refuses: say so
                    snapshot.leave_out(f"{relative_dir}/{name}" if relative_dir else name,
                                       "git does not accept this name")
                    continue
                listing.append((name, status))
            ignored: set[bytes] = set()
            if not excluded:
                ignored = rules.ignored(encoded_dir, [(os.fsencode(name), stat.S_ISDIR(status.st_mode))
                                                      for name, status in listing])
            for name, status in listing:
                new_files += _take_one(snapshot, kept, head, directory, relative_dir, name, status,
                                       excluded or os.fsencode(name) in ignored, pending,
                                       gitlinks, gitlink_parents, tracked_dirs)
                if max_new_files is not None and new_files > max_new_files:
                    raise TooManyNewFiles(max_new_files)
    snapshot.entries.extend(Entry(head[path].mode, path, sha=head[path].sha) for path in kept)
    snapshot.entries.sort(key=lambda entry: entry.path)
    snapshot.left_out.sort(key=lambda item: item.path)
    return snapshot


def _take_one(snapshot: Snapshot, kept: set[bytes], head: Mapping[bytes, Tracked], directory: Path,
              relative_dir: str, name: str, status: os.stat_result, is_ignored: bool,
              pending: list[tuple[Path, str, bool]], gitlinks: set[bytes],
              gitlink_parents: set[bytes], tracked_dirs: set[bytes]) -> int:
    """Decide one directory entry; returns 1 when it is a new file to propose."""
    st_mode = status.st_mode
    relative = f"{relative_dir}/{name}" if relative_dir else name
    path = os.fsencode(relative)
    if path in gitlinks:
        for inner, reason in _inside_submodule(directory / name, relative, st_mode):
            snapshot.leave_out(inner, reason)
        return 0
    if stat.S_ISDIR(st_mode):
        if not is_ignored or path in tracked_dirs or path in gitlink_parents:
            pending.append((directory / name, relative, is_ignored))
        return 0
    if path in gitlink_parents:
        snapshot.leave_out(relative, "it replaces a directory that holds a submodule")
        return 0
    if path not in head and is_ignored:
        return 0
    entry_or_reason = _entry(directory / name, path, name, status)
    if not isinstance(entry_or_reason, Entry):
        snapshot.leave_out(relative, entry_or_reason)
        if path in head:
            kept.add(path)
        return 0
    snapshot.entries.append(entry_or_reason)
    return 0 if path in head else 1


BATCH = 1024


def _batches(directory: Path) -> Iterator[list[tuple[str, os.stat_result]]]:
    """The directory's entries with their lstat, BATCH at a time, in no particular order."""
    with os.scandir(directory) as entries:
        batch = []
        for entry in entries:
            batch.append((entry.name, entry.stat(follow_symlinks=False)))
            if len(batch) == BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def _entry(source: Path, path: bytes, name: str, status: os.stat_result) -> Entry | str:
    mode = file_mode(status.st_mode)
    if mode is None:
        return "it is not a regular file, a directory or a symlink"
    if mode == SYMLINK:
        if is_symlink_git_refuses(name):
            return "git does not accept a symlink under this name"
        return Entry(mode, path, source)
    if status.st_size > GITHUB_FILE_LIMIT:
        return "it is larger than GitHub's 100 MB file limit"
    return Entry(mode, path, source, status.st_size)


def _inside_submodule(location: Path, relative: str, st_mode: int) -> Iterator[tuple[str, str]]:
    """The agent's files at a submodule's path: never committed, each reported."""
    if not stat.S_ISDIR(st_mode):
        yield relative, "a submodule is at this path"
        return
    reason = f"it is inside the submodule {relative}"
    pending = [(location, relative)]
    while pending:
        directory, relative_dir = pending.pop()
        for name, status in (item for batch in _batches(directory) for item in batch):
            if is_dot_git(name):
                continue
            inner = f"{relative_dir}/{name}"
            if stat.S_ISDIR(status.st_mode):
                pending.append((directory / name, inner))
            else:
                yield inner, reason


def _parents(path: bytes) -> Iterator[bytes]:
    parts = path.split(b"/")
    for end in range(1, len(parts)):
        yield b"/".join(parts[:end])
