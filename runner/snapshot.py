"""What the runner proposes from the agent's work tree, read by the runner itself, never by git.

Host git never opens the work tree: any file in it can be the agent's, and git reads config,
attributes, hooks and nested repositories from a tree it is pointed at. So the runner walks the
tree, never following a symlink, and turns it into index entries for `git update-index`:

- every `.git` entry at any depth is skipped, in every spelling git treats as `.git`;
- a directory holding a repository the agent created is taken as plain files;
- submodules (gitlinks) are copied from HEAD unchanged; whatever the agent put at or under a
  submodule's path is left out, and so is a file where a directory holding one was;
- `.gitignore` rules apply as `git add --all` applies them: untracked ignored paths stay out,
  tracked files are always taken;
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

from pathspec import GitIgnoreSpec

REGULAR = "100644"
EXECUTABLE = "100755"
SYMLINK = "120000"
GITLINK = "160000"

WORKFLOWS = b".github/workflows"
GITHUB_FILE_LIMIT = 100 * 1024 * 1024  # GitHub refuses pushes with a larger file
GITIGNORE_LIMIT = 256 * 1024
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


@dataclass(frozen=True)
class Entry:
    """A path to propose: a file or symlink read from the tree, or an entry kept from HEAD."""

    mode: str
    path: bytes  # relative, "/"-separated, as git stores it
    source: Path | None = None  # the file or symlink on disk, to be read
    size: int = 0
    sha: str | None = None  # set instead of `source` for what is kept as HEAD has it


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

    Mirrors git's `is_ntfs_dotgit` and `is_hfs_dotgit`, which its fsck applies on every
    platform: `.git` in any case, with trailing dots or spaces, an NTFS stream suffix, the
    8.3 short name `git~1`, or HFS+-ignored code points anywhere.
    """
    folded = "".join(c for c in name if ord(c) not in _HFS_IGNORED).lower()
    if folded == ".git":
        return True
    lowered = name.lower()
    for stem in (".git", "git~1"):
        if lowered.startswith(stem):
            rest = lowered[len(stem):].split(":", 1)[0].split("\\", 1)[0]
            if rest.strip(". ") == "":
                return True
    return False


def is_symlink_git_refuses(name: str) -> bool:
    """A symlink named like `.gitmodules`: git will not index it and GitHub refuses it."""
    folded = "".join(c for c in name if ord(c) not in _HFS_IGNORED).lower().rstrip(". ")
    return folded == ".gitmodules" or (
        folded.startswith("gitmod~") and folded[len("gitmod~"):].isdigit()
    )


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


class _IgnoreRules:
    """The `.gitignore` files from the tree's root down to one directory."""

    def __init__(self, layers: tuple[tuple[str, GitIgnoreSpec], ...] = ()):
        self._layers = layers

    def below(self, directory: str, gitignore: Path) -> _IgnoreRules:
        spec = _read_gitignore(gitignore)
        return _IgnoreRules((*self._layers, (directory, spec))) if spec else self

    def ignores(self, path: str, is_dir: bool) -> bool:
        # The deepest file with a matching pattern decides; within a file, the last match.
        for base, spec in reversed(self._layers):
            relative = path[len(base) + 1:] if base else path
            result = spec.check_file(relative + "/" if is_dir else relative)
            if result.include is not None:
                return result.include
        return False


def _read_gitignore(path: Path) -> GitIgnoreSpec | None:
    # Like git since 2.32, a symlinked .gitignore is not followed.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        text = handle.read(GITIGNORE_LIMIT).decode("utf-8", "surrogateescape")
    return GitIgnoreSpec.from_lines(text.splitlines())


def take(tree: Path, head: Mapping[bytes, Tracked]) -> Snapshot:
    """Everything under `tree` that a pull request should propose, against HEAD's `head`."""
    gitlinks = {path for path, tracked in head.items() if tracked.mode == GITLINK}
    gitlink_parents = {parent for path in gitlinks for parent in _parents(path)}
    tracked_dirs = {parent for path in head for parent in _parents(path)}
    snapshot = Snapshot()
    kept = set(gitlinks)  # paths proposed as HEAD has them

    # Depth-first with an explicit stack: an agent can nest directories deeper than Python recurses.
    # Each item: the directory, its path in the tree, the ignore rules above it, and whether
    # an ignore rule already excluded it (then only tracked files are taken from it).
    pending: list[tuple[Path, str, _IgnoreRules, bool]] = [(tree, "", _IgnoreRules(), False)]
    while pending:
        directory, relative_dir, rules, excluded = pending.pop()
        if not excluded:
            rules = rules.below(relative_dir, directory / ".gitignore")
        for name, status in _list(directory):
            if is_dot_git(name):
                continue
            st_mode = status.st_mode
            relative = f"{relative_dir}/{name}" if relative_dir else name
            path = os.fsencode(relative)
            if path in gitlinks:
                for inner, reason in _inside_submodule(directory / name, relative, st_mode):
                    snapshot.leave_out(inner, reason)
                continue
            if stat.S_ISDIR(st_mode):
                ignored = excluded or rules.ignores(relative, is_dir=True)
                if not ignored or path in tracked_dirs or path in gitlink_parents:
                    pending.append((directory / name, relative, rules, ignored))
                continue
            if path in gitlink_parents:
                snapshot.leave_out(relative, "it replaces a directory that holds a submodule")
                continue
            if path not in head and (excluded or rules.ignores(relative, is_dir=False)):
                continue
            entry_or_reason = _entry(directory / name, path, name, status)
            if isinstance(entry_or_reason, Entry):
                snapshot.entries.append(entry_or_reason)
            else:
                snapshot.leave_out(relative, entry_or_reason)
                if path in head:
                    kept.add(path)
    snapshot.entries.extend(Entry(head[path].mode, path, sha=head[path].sha) for path in kept)
    snapshot.entries.sort(key=lambda entry: entry.path)
    snapshot.left_out.sort(key=lambda item: item.path)
    return snapshot


def _list(directory: Path) -> list[tuple[str, os.stat_result]]:
    with os.scandir(directory) as entries:
        listing = [(entry.name, entry.stat(follow_symlinks=False)) for entry in entries]
    return sorted(listing, key=lambda item: item[0])


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
        for name, status in _list(directory):
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
