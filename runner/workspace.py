"""Host-side git for a task: fetch the repository, describe, commit and push the agent's work.

The sandbox mounts only the work tree (`<root>/tree`). The git directory beside it
(`<root>/git`) is a bare repository, and git never gets a work tree: the runner writes the
tree out of git's object database itself and reads the agent's tree back itself
(`runner/snapshot.py`). So nothing the agent leaves in the tree -- a `.git` directory with hooks
and config, a nested repository under a submodule, `.gitattributes` naming filter drivers --
is ever read as configuration or executed on the host, whichever user the service runs as.

The installation token reaches git only through the child's environment as an HTTP header
(`GIT_CONFIG_*`); it is never written to disk, put in a URL or a command line, or logged.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import logging
import os
import re
import signal
import stat
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from runner import snapshot
from runner.snapshot import GITLINK, SYMLINK, LeftOut, Tracked
from runner.ignore_rules import GitIgnoreRules, IgnoreRulesError
from runner.tree_removal import remove_tree

log = logging.getLogger(__name__)

FETCH_DEPTH = 50
DIFF_LIMIT_BYTES = 1024 * 1024
OUTPUT_LIMIT = 512 * 1024 * 1024  # what host git may print: a huge repository's ls-tree fits
ERROR_LIMIT = 64 * 1024  # of git's stderr, the end is kept
PUSH_LIMIT_BYTES = 2 * 1024**3
LOCAL_TIMEOUT = 120.0
ERROR_TEXT_LIMIT = 2000

# Passed on every command line; they override anything in the repository's own config.
_HARDENING_OPTIONS = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.symlinks=true",
    "-c", "protocol.allow=never",
    "-c", "protocol.https.allow=always",
    "-c", "protocol.http.allow=always",
    "-c", "submodule.recurse=false",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
)

_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


class GitError(RuntimeError):
    """A git operation failed; the message is safe to log and never contains the token."""


class EmptyRepository(GitError):
    """The repository has no commits, or no branch of the expected default name."""


class TooManyChanges(GitError):
    """The agent changed more files than the task may propose."""

    def __init__(self, count: int | None, limit: int):
        described = f"{count:,}" if count is not None else f"more than {limit:,}"
        super().__init__(f"{described} files changed, more than the {limit:,} allowed")
        self.count, self.limit = count, limit
        self.described = described


class TooLarge(GitError):
    """What the agent added or changed is more than GitHub takes in one push."""


class PushRejected(GitError):
    """The remote refused the branch (a hook, branch protection, or a non-fast-forward)."""

    @property
    def branch_moved(self) -> bool:
        """The remote branch has commits the pushed one does not build on."""
        return any(sign in str(self) for sign in ("fetch first", "non-fast-forward", "stale info"))


@dataclass(frozen=True)
class Workspace:
    root: Path
    tree: Path
    git_dir: Path
    branch: str


@dataclass(frozen=True)
class FileStat:
    path: str
    added: int | None
    deleted: int | None
    status: str


@dataclass(frozen=True)
class Changes:
    files: list[FileStat]
    diff: str
    tree: str = ""  # the proposed tree's id, for `commit`
    left_out: list[LeftOut] = field(default_factory=list)
    left_out_count: int = 0


def attempt_root(base_dir: Path, task_id: str, attempt: int) -> Path:
    """Where one attempt of a task keeps its work tree and git directory."""
    return Path(base_dir) / f"{task_id}-{attempt}"


def prepare(
    base_dir: Path,
    task_id: str,
    *,
    attempt: int = 1,
    clone_url: str,
    token: str,
    default_branch: str,
    branch: str,
    sandbox_owner: tuple[int, int] | None = None,
    timeout: float = 300,
    files: bool = True,
) -> Workspace:
    """Fetch `default_branch`, start `branch` there and write its files into a fresh work tree
    (`files` False: leave the tree empty, for the caller to fill)."""
    if not _TASK_ID.fullmatch(task_id):
        raise ValueError(f"task id {task_id!r} is not a plain file name")
    _check_clone_url(clone_url)
    root = attempt_root(base_dir, task_id, attempt)
    ws = Workspace(root=root, tree=root / "tree", git_dir=root / "git", branch=branch)

    Path(base_dir).mkdir(parents=True, exist_ok=True)
    try:
        root.mkdir(mode=0o700)
    except FileExistsError:
        raise GitError(f"workspace {root} already exists") from None
    try:
        ws.tree.mkdir()
        _home(ws).mkdir(mode=0o700)
        _check_branch_name(ws, default_branch)
        _check_branch_name(ws, branch)
        _run_git(ws, ["init", "--quiet", "--bare", "--template=", f"--initial-branch={branch}"],
                 what="git init")
        _fetch_default_branch(ws, clone_url, token, default_branch, timeout)
        base = _rev_parse(ws, f"{_base_ref(default_branch)}^{{commit}}")
        _run_git(ws, ["update-ref", f"refs/heads/{branch}", base, ""], what="git update-ref")
        if files:
            _write_tree(ws, _tracked(ws, base))
        if sandbox_owner is not None and files:
            _chown_recursive(ws.tree, *sandbox_owner)
    except BaseException:
        remove(ws)
        raise
    log.info("prepared workspace %s: %s from %s", root, branch, default_branch)
    return ws


@dataclass(frozen=True)
class TestCheckout:
    """A side-by-side member's pushed commit, ready for the repository's tests: the tree holds
    the files of the commit it started from (what `setup` may run on, online), `branch` the
    commit's own files (which only ever reach the tree offline), and `removed` the paths to
    delete from the tree before copying them in (gone in the commit, or a file where the
    start had a directory)."""

    workspace: Workspace
    branch: Path
    removed: tuple[str, ...]


def prepare_test_checkout(base_dir: Path, task_id: str, *, attempt: int, clone_url: str,
                          token: str, branch: str, commit: str,
                          sandbox_owner: tuple[int, int] | None = None,
                          timeout: float = 300) -> TestCheckout:
    """Fetch `branch`, check that it holds `commit` (the one the member pushed) and lay out a
    TestCheckout of it. Raises GitError when the branch holds another commit, or a commit with
    no parent. Host git only reads objects: no checkout, filter or hook runs."""
    ws = prepare(base_dir, task_id, attempt=attempt, clone_url=clone_url, token=token,
                 default_branch=branch, branch=branch, timeout=timeout, files=False)
    try:
        if _rev_parse(ws, "HEAD^{commit}") != commit:
            raise GitError(f"{branch} no longer holds {commit}")
        start = _tracked(ws, "HEAD^")
        pushed = _tracked(ws, "HEAD")
        # As long a name as the tree's: any path the agent's tree could hold fits here too.
        branch_files = ws.root / "head"
        branch_files.mkdir(mode=0o755)
        _write_tree(ws, start)
        _write_tree(ws, pushed, into=branch_files)
        _readable_directories(branch_files)
        start_dirs = {path[:end] for path in start for end in _slashes(path)}
        removed = sorted({path for path in start if path not in pushed}
                         | {path for path in pushed if path in start_dirs})
        if sandbox_owner is not None:
            _chown_recursive(ws.tree, *sandbox_owner)
    except OSError as error:
        remove(ws)
        raise GitError(f"the pushed commit could not be laid out: {error}") from None
    except BaseException:
        remove(ws)
        raise
    return TestCheckout(ws, branch_files, tuple(os.fsdecode(path) for path in removed))


def _readable_directories(root: Path) -> None:
    """Directories the sandbox's user can read, whatever the runner's umask; the runner made
    every one of them, and nothing else has run in them."""
    for directory, names, _files in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
    os.chmod(root, 0o755)


def start_commit(ws: Workspace) -> str:
    """The commit the task's branch starts from: the one fetched."""
    return _rev_parse(ws, "HEAD^{commit}")


def collect_changes(ws: Workspace, *, max_changed_files: int | None = None) -> Changes:
    """Read the tree into a git tree of its own and describe it against HEAD.

    Call only once the sandbox has stopped: the runner reads files by path, so an agent still
    running could swap a file for a symlink between the check and the read. Raises
    TooManyChanges past `max_changed_files`, before storing anything when added and deleted
    files alone are too many.
    """
    head = _tracked(ws, "HEAD")
    taken, proposed = _read_proposal(ws, head, max_changed_files)
    workflows_left_out = _keep_workflows(proposed, head)
    if max_changed_files is not None:
        changed = sum(1 for path in proposed.keys() | head.keys()
                      if path not in head or proposed.get(path) != (head[path].mode, head[path].sha))
        if changed > max_changed_files:
            raise TooManyChanges(changed, max_changed_files)
    tree_id = _write_proposed_tree(ws, proposed)

    compare = ["diff-tree", "-r", "-z", "--find-renames", "--no-ext-diff", "--no-textconv", "HEAD", tree_id]
    statuses = _parse_name_status(_run_git(ws, [*compare, "--name-status"], what="git diff-tree").stdout)
    counts = _parse_numstat(_run_git(ws, [*compare, "--numstat"], what="git diff-tree").stdout)
    files = [FileStat(path, *counts.get(path, (None, None)), status) for path, status in statuses]
    left_out = sorted(taken.left_out + workflows_left_out, key=lambda item: item.path)
    return Changes(files=files, diff=_capped_diff(ws, tree_id) if files else "", tree=tree_id,
                   left_out=left_out[:snapshot.LEFT_OUT_LISTED],
                   left_out_count=taken.left_out_count + len(workflows_left_out))


def _read_proposal(ws: Workspace, head: Mapping[bytes, Tracked], max_changed_files: int | None
                   ) -> tuple[snapshot.Snapshot, dict[bytes, tuple[str, str]]]:
    """What the tree proposes, path by path: (mode, object id), new blobs stored."""
    try:
        with GitIgnoreRules(scratch_parent=ws.root, timeout=LOCAL_TIMEOUT) as rules:
            taken = snapshot.take(ws.tree, head, rules, max_new_files=max_changed_files)
        if max_changed_files is not None:
            added_or_deleted = len({entry.path for entry in taken.entries} ^ head.keys())
            if added_or_deleted > max_changed_files:
                raise TooManyChanges(added_or_deleted, max_changed_files)
        # Only content of a new size can be new: that much must be read and stored, and a
        # sparse file is large for no disk at all. GitHub takes at most 2 GB in a push.
        unseen = sum(entry.size for entry in taken.entries if entry.source is not None
                     and (entry.path not in head or head[entry.path].size != entry.size))
        if unseen > PUSH_LIMIT_BYTES:
            raise TooLarge(f"the new and changed files take {unseen / 1024**3:.1f} GB; GitHub "
                           "accepts at most 2 GB in one push")
        return taken, {entry.path: (entry.mode, entry.sha or _store_blob(ws, entry, head.get(entry.path)))
                       for entry in taken.entries}
    except OSError as error:  # unreadable, or a path longer than the system allows
        where = os.path.relpath(os.fsdecode(error.filename), ws.tree) if error.filename else "the work tree"
        raise GitError(f"{where}: {error.strerror}") from None
    except IgnoreRulesError as error:
        raise GitError(str(error)) from None
    except snapshot.TooManyNewFiles as error:
        raise TooManyChanges(None, error.limit) from None


def _write_proposed_tree(ws: Workspace, proposed: Mapping[bytes, tuple[str, str]]) -> str:
    """The id of a git tree holding exactly `proposed`, built in an index of its own."""
    index = ws.root / "proposed-index"
    index.unlink(missing_ok=True)
    index_env = {"GIT_INDEX_FILE": str(index)}
    _run_git(ws, ["update-index", "-z", "--index-info"], what="git update-index", extra_env=index_env,
             stdin=b"".join(b"%s %s\t%s\0" % (mode.encode(), sha.encode(), path)
                            for path, (mode, sha) in sorted(proposed.items())))
    tree_id = _run_git(ws, ["write-tree"], what="git write-tree", extra_env=index_env).stdout.decode().strip()
    index.unlink()
    # update-index skips a path its own checks refuse with only a message: make sure none was.
    if dropped := sorted(proposed.keys() - set(_tracked(ws, tree_id))):
        raise GitError("git refused to record " + ", ".join(repr(os.fsdecode(p)) for p in dropped[:5]))
    return tree_id


def _keep_workflows(proposed: dict[bytes, tuple[str, str]],
                    head: Mapping[bytes, Tracked]) -> list[LeftOut]:
    """Put back `.github/workflows` as HEAD has it; returns what the agent changed there.

    The push would fail otherwise: async-code's token never has the `workflows` permission.
    """
    left_out = []
    for path in sorted(p for p in proposed.keys() | head.keys() if snapshot.touches_workflows(p)):
        before, after = head.get(path), proposed.get(path)
        if before is not None and after == (before.mode, before.sha):
            continue
        verb = "change" if before is not None and after is not None else "add" if before is None else "delete"
        left_out.append(LeftOut(os.fsdecode(path), f"async-code may not {verb} workflow files "
                                                   "(it has no `workflows` permission)"))
        if before is None:
            del proposed[path]
        else:
            proposed[path] = (before.mode, before.sha)
    # A file or symlink where a directory of workflow files was put back must give way.
    directories = {b"/".join(path.split(b"/")[:end]) for path in proposed
                   for end in range(1, path.count(b"/") + 1)}
    for path in sorted(directories & proposed.keys()):
        left_out.append(LeftOut(os.fsdecode(path), "it replaces a directory that holds workflow files"))
        del proposed[path]
    return left_out


def commit(ws: Workspace, changes: Changes, *, message: str, author_name: str,
           author_email: str) -> str:
    """Commit the tree `collect_changes` proposed on top of HEAD; returns the new commit's sha."""
    head = _rev_parse(ws, "HEAD^{commit}")
    if not changes.files or changes.tree == _rev_parse(ws, "HEAD^{tree}"):
        raise GitError("git commit failed: nothing to commit")
    identity = {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }
    created = _run_git(
        ws,
        ["commit-tree", "--no-gpg-sign", "-p", head, "-F", "-", changes.tree],
        what="git commit-tree",
        stdin=_clean_message(message).encode(),
        extra_env=identity,
    )
    sha = created.stdout.decode().strip()
    # Moves the branch only if it still points where the commit's parent is.
    _run_git(ws, ["update-ref", f"refs/heads/{ws.branch}", sha, head], what="git update-ref")
    log.info("committed %s on %s in %s", sha, ws.branch, ws.root)
    return sha


def _clean_message(message: str) -> str:
    # What `git commit --cleanup=whitespace` does: lines starting with '#' are kept.
    lines = [line.rstrip() for line in message.strip().splitlines()]
    kept = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]
    return "\n".join(kept) + "\n"


def remote_branch_commit(ws: Workspace, *, clone_url: str, token: str,
                         timeout: float = 300) -> tuple[str, str] | None:
    """The commit the task's branch points at on the remote, and its message; None when the
    remote has no such branch."""
    _check_clone_url(clone_url)
    result = _run_git(
        ws,
        ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--depth=1", clone_url,
         f"+refs/heads/{ws.branch}:{_EARLIER_REF}"],
        what="git fetch", token=token, timeout=timeout, check=False)
    if result.returncode != 0:
        stderr = _text(result.stderr)
        if "couldn't find remote ref" in stderr:
            return None
        raise GitError(_failure_text("git fetch failed", stderr, token))
    sha = _rev_parse(ws, f"{_EARLIER_REF}^{{commit}}")
    commit = _run_git(ws, ["cat-file", "commit", sha], what="git cat-file").stdout
    _, _, message = commit.partition(b"\n\n")
    return sha, message.decode("utf-8", "replace")


def push(ws: Workspace, *, clone_url: str, token: str, timeout: float = 300,
         replacing: str | None = None) -> None:
    """Push the task's branch, and nothing else, to the same-named branch on the remote.

    Never forced blindly: when the remote branch has moved past the commit the task started
    from, the remote refuses and PushRejected says so ("fetch first" or "non-fast-forward").
    With `replacing`, the remote branch may go from exactly that commit (an earlier attempt's)
    to this one, and from nothing else.
    """
    _check_clone_url(clone_url)
    ref = f"refs/heads/{ws.branch}"
    lease = [f"--force-with-lease={ref}:{replacing}"] if replacing else []
    result = _run_git(
        ws,
        ["push", "--porcelain", "--no-verify", "--recurse-submodules=no", *lease, clone_url,
         f"{ref}:{ref}"],
        what="git push",
        token=token,
        timeout=timeout,
        check=False,
    )
    # --porcelain marks every ref the remote refused with "!".
    rejected = [line for line in _text(result.stdout).splitlines() if line.startswith("!")]
    if rejected:
        detail = "\n".join([*rejected, _text(result.stderr)])
        raise PushRejected(_failure_text("git push was rejected", detail, token))
    if result.returncode != 0:
        raise GitError(_failure_text("git push failed", _text(result.stderr), token))
    log.info("pushed %s from %s", ws.branch, ws.root)


def remove(ws: Workspace) -> bool:
    """Delete the whole workspace, whatever the agent left in it; True when it is gone."""
    return remove_tree(ws.root)


def remove_leftovers(base_dir: Path, keep: Collection[tuple[str, int]] = ()) -> list[str]:
    """Delete the workspaces under `base_dir` (one store's) of attempts not in `keep` (left by a
    crash, or by an attempt that was superseded); returns their names.

    Each is handled on its own: one that cannot be removed is logged and the rest still go.
    """
    if not base_dir.is_dir():
        return []
    kept = {attempt_root(base_dir, task_id, attempt).name for task_id, attempt in keep}
    removed = []
    for entry in sorted(base_dir.iterdir()):
        if entry.name not in kept and entry.is_dir() and not entry.is_symlink():
            if remove_tree(entry):
                removed.append(entry.name)
    return removed


# A work tree as versions before attempts kept it: `<workspaces>/<task id>`.
_OLDER_LAYOUT = re.compile(r"[0-9a-f]{32}")


def remove_older_layout(workspaces: Path, keep: Collection[str] = ()) -> list[str]:
    """Delete the work trees an earlier version left directly in `workspaces` (named by their
    task id alone) whose task is not in `keep`; returns their names. Today's trees live one
    level down, in their store's directory, which this never touches."""
    if not workspaces.is_dir():
        return []
    removed = []
    for entry in sorted(workspaces.iterdir()):
        if (_OLDER_LAYOUT.fullmatch(entry.name) and entry.name not in keep and entry.is_dir()
                and not entry.is_symlink() and remove_tree(entry)):
            removed.append(entry.name)
    return removed


def _fetch_default_branch(
    ws: Workspace, clone_url: str, token: str, default_branch: str, timeout: float
) -> None:
    refspec = f"+refs/heads/{default_branch}:{_base_ref(default_branch)}"
    result = _run_git(
        ws,
        ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", f"--depth={FETCH_DEPTH}"]
        + [clone_url, refspec],
        what="git fetch",
        token=token,
        timeout=timeout,
        check=False,
    )
    if result.returncode == 0:
        return
    stderr = _text(result.stderr)
    if "couldn't find remote ref" in stderr:
        raise EmptyRepository(f"the repository has no branch {default_branch!r}; is it empty?")
    raise GitError(_failure_text("git fetch failed", stderr, token))


# Where the task's branch as the remote has it is fetched, to see whose commit it holds.
_EARLIER_REF = "refs/earlier-attempt/head"


def _base_ref(default_branch: str) -> str:
    return f"refs/remotes/origin/{default_branch}"


def _rev_parse(ws: Workspace, revision: str) -> str:
    result = _run_git(ws, ["rev-parse", "--verify", "--quiet", revision], what="git rev-parse")
    return result.stdout.decode().strip()


def _tracked(ws: Workspace, revision: str) -> dict[bytes, Tracked]:
    """Every path in `revision`'s tree (submodules included) with its mode and object id."""
    listing = _run_git(ws, ["ls-tree", "-r", "-z", "-l", "--full-tree", revision],
                       what="git ls-tree").stdout
    tracked = {}
    for record in listing.split(b"\0"):
        if record:
            meta, _, path = record.partition(b"\t")
            mode, _kind, sha, size = meta.decode().split()
            if path in tracked:  # git's fsck calls this duplicateEntries; GitHub refuses it
                raise GitError(f"{revision} has a malformed tree: {os.fsdecode(path)!r} twice")
            tracked[path] = Tracked(mode, sha, int(size) if size.isdigit() else None)
    return tracked


def _write_tree(ws: Workspace, tracked: Mapping[bytes, Tracked], *,
                into: Path | None = None) -> None:
    """Write a commit's files into the empty work tree (or the empty directory `into`) straight
    from the object database.

    Content is written as stored: no attributes, filters or line-ending conversion apply, so
    what the runner later reads back differs from HEAD only where the agent changed it.
    """
    parents = {path[:end] for path in tracked for end in _slashes(path)}
    if clashes := sorted(parents & tracked.keys()):
        raise GitError(f"the default branch has a malformed tree: {os.fsdecode(clashes[0])!r} is "
                       "both a file and a directory")
    for path in tracked:
        _check_stored_path(path)
    tree = os.fsencode(into if into is not None else ws.tree)
    made = _DirectoryMaker(tree)
    for path, entry in tracked.items():
        if entry.mode == GITLINK:  # an empty directory, as git leaves an uninitialised submodule
            made.parents_of(path)
            os.mkdir(os.path.join(tree, path))
    blobs = [(path, entry) for path, entry in tracked.items() if entry.mode != GITLINK]
    with subprocess.Popen(
        _git_command(ws, ["cat-file", "--batch"]), cwd=ws.root, env=_git_environment(ws, None),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as reader:
        assert reader.stdin is not None and reader.stdout is not None
        # Requests go from a thread of their own, so git never waits for the next one.
        requests = threading.Thread(target=_request_objects, daemon=True,
                                    args=(reader.stdin, [entry.sha for _, entry in blobs]))
        requests.start()
        try:
            for path, entry in blobs:
                header = reader.stdout.readline().split()
                if len(header) != 3 or header[1] != b"blob":
                    raise GitError(f"git cat-file could not read {os.fsdecode(path)!r}")
                made.parents_of(path)
                _write_file(os.path.join(tree, path), entry.mode, reader.stdout, int(header[2]))
                reader.stdout.read(1)  # the newline after each object
        finally:
            reader.kill()
            requests.join()


def _request_objects(stdin: IO[bytes], shas: list[str]) -> None:
    try:
        for sha in shas:
            stdin.write(sha.encode() + b"\n")
        stdin.close()
    except (BrokenPipeError, ValueError):
        pass  # git stopped: the reader reports why


class _DirectoryMaker:
    """Creates the directories of a fresh tree, each once."""

    def __init__(self, tree: bytes):
        self._tree, self._made = tree, {b""}

    def parents_of(self, path: bytes) -> None:
        for end in _slashes(path):
            parent = path[:end]
            if parent not in self._made:
                try:
                    os.mkdir(os.path.join(self._tree, parent))
                except FileExistsError:  # written as a file or link: the tree is malformed
                    raise GitError(f"{os.fsdecode(path)!r} is below a file in the default branch") from None
                self._made.add(parent)


def _slashes(path: bytes) -> Iterator[int]:
    return (index for index, byte in enumerate(path) if byte == 0x2F)


def _check_stored_path(path: bytes) -> None:
    if any(part in ("", ".", "..") or snapshot.is_dot_git(part) for part in os.fsdecode(path).split("/")):
        raise GitError(f"the default branch holds a path git refuses: {os.fsdecode(path)!r}")


def _write_file(target: bytes, mode: str, source: IO[bytes], size: int) -> None:
    if mode == SYMLINK:
        os.symlink(source.read(size), target)
        return
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        remaining = size
        while remaining:
            chunk = source.read(min(remaining, 1 << 20))
            if not chunk:
                raise GitError("git cat-file ended early")
            handle.write(chunk)
            remaining -= len(chunk)
        os.fchmod(handle.fileno(), 0o755 if mode == snapshot.EXECUTABLE else 0o644)


def _store_blob(ws: Workspace, entry: snapshot.Entry, tracked: Tracked | None) -> str:
    """The blob id of a file or symlink in the tree, added to the object database if new.

    The runner reads the file itself (never through a symlink) and hashes it as git would;
    git is only handed finished objects.
    """
    assert entry.source is not None
    if entry.mode == SYMLINK:
        target = os.readlink(os.fsencode(entry.source))
        return _write_object(ws, [target], len(target), _blob_id(target))
    fd = os.open(entry.source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        found = os.fstat(handle.fileno())
        if not stat.S_ISREG(found.st_mode) or found.st_size != entry.size:
            raise GitError(f"{os.fsdecode(entry.path)!r} changed while it was read")
        digest = hashlib.sha1(b"blob %d\0" % entry.size)
        for chunk in _chunks(handle):
            digest.update(chunk)
        sha = digest.hexdigest()
        if tracked is not None and tracked.sha == sha:
            return sha  # unchanged: HEAD's object is already stored
        handle.seek(0)
        return _write_object(ws, _chunks(handle), entry.size, sha)


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: handle.read(1 << 20), b"")


def _blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _write_object(ws: Workspace, chunks: Iterable[bytes], size: int, sha: str) -> str:
    """Store a blob as git's loose object (zlib over `blob <size>NUL<content>`), id checked."""
    directory = ws.git_dir / "objects" / sha[:2]
    final = directory / sha[2:]
    if final.exists():
        return sha
    directory.mkdir(exist_ok=True)
    header = b"blob %d\0" % size
    digest, compressor, written = hashlib.sha1(header), zlib.compressobj(), 0
    with tempfile.NamedTemporaryFile(dir=directory, prefix="tmp_obj_", delete=False) as spool:
        spool.write(compressor.compress(header))
        for chunk in chunks:
            digest.update(chunk)
            written += len(chunk)
            spool.write(compressor.compress(chunk))
        spool.write(compressor.flush())
    if written != size or digest.hexdigest() != sha:
        os.unlink(spool.name)
        raise GitError("a file changed while it was read")
    os.chmod(spool.name, 0o444)
    os.replace(spool.name, final)
    return sha


def _check_clone_url(clone_url: str) -> None:
    # The URL ends up on git's command line, so it must not carry anything secret.
    parts = urlsplit(clone_url)
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ValueError("the clone URL must not carry credentials, a query or a fragment")
    if parts.scheme == "https" and parts.hostname:
        return
    # The token goes in a header: over plain HTTP anything on the path could read it.
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return
    raise ValueError("the clone URL must be https:// (or http:// to a loopback address)")


def _check_branch_name(ws: Workspace, name: str) -> None:
    # A leading dash would read as an option; git's own rules cover everything else.
    if name.startswith("-") or not name:
        raise ValueError(f"invalid branch name {name!r}")
    format_check = _run_git(
        ws, ["check-ref-format", f"refs/heads/{name}"], what="git check-ref-format", check=False
    )
    if format_check.returncode != 0:
        raise ValueError(f"invalid branch name {name!r}")


def _home(ws: Workspace) -> Path:
    return ws.root / "home"


def _git_environment(ws: Workspace, token: str | None) -> dict[str, str]:
    # Built from nothing so host secrets never reach git, its helpers or its error output.
    env = {
        "PATH": os.environ.get("PATH") or os.defpath,
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": str(_home(ws)),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    if token is not None:
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=_authorization_header(token),
        )
    return env


def _authorization_header(token: str) -> str:
    return "Authorization: Basic " + _basic_credentials(token)


def _basic_credentials(token: str) -> str:
    return base64.b64encode(f"x-access-token:{token}".encode()).decode()


def _run_git(
    ws: Workspace,
    args: list[str],
    *,
    what: str,
    token: str | None = None,
    timeout: float = LOCAL_TIMEOUT,
    stdin: bytes | None = None,
    extra_env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run host git on the workspace's git directory; its output is read through caps."""
    command = _git_command(ws, args)
    env = _git_environment(ws, token) | (extra_env or {})
    # A session of its own, so a timeout can kill git's helpers (git-remote-https) with it.
    with subprocess.Popen(
        command,
        cwd=ws.root,
        env=env,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as process:
        timed_out = threading.Event()
        timer = threading.Timer(timeout, lambda: (timed_out.set(), _kill_group(process)))
        timer.start()
        try:
            out, err, too_much = _read_capped(process, stdin)
        finally:
            timer.cancel()
        process.wait()
    if timed_out.is_set():
        raise GitError(f"{what} timed out after {timeout:g} s")
    if too_much:
        raise GitError(f"{what} printed more than {OUTPUT_LIMIT // (1024 * 1024)} MB")
    result = subprocess.CompletedProcess(command, process.returncode, out, err)
    if check and result.returncode != 0:
        raise GitError(_failure_text(f"{what} failed", _text(err), token))
    return result


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _read_capped(process: subprocess.Popen, stdin: bytes | None) -> tuple[bytes, bytes, bool]:
    """stdout up to OUTPUT_LIMIT (True when git printed more) and the last ERROR_LIMIT bytes
    of stderr, which is all an error message needs."""
    assert process.stdout is not None and process.stderr is not None
    errors: collections.deque[bytes] = collections.deque()

    def drain_stderr() -> None:
        kept = 0
        for chunk in iter(lambda: process.stderr.read1(65536), b""):
            errors.append(chunk)
            kept += len(chunk)
            while kept - len(errors[0]) >= ERROR_LIMIT:
                kept -= len(errors.popleft())

    def feed_stdin() -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            process.stdin.write(stdin)
            process.stdin.close()

    helpers = [threading.Thread(target=drain_stderr, daemon=True)]
    if stdin is not None:
        helpers.append(threading.Thread(target=feed_stdin, daemon=True))
    for helper in helpers:
        helper.start()
    out = bytearray()
    too_much = False
    for chunk in iter(lambda: process.stdout.read1(1 << 20), b""):
        out += chunk
        if len(out) > OUTPUT_LIMIT:
            too_much = True
            _kill_group(process)
            break
    for helper in helpers:
        helper.join()
    return bytes(out), b"".join(errors)[-ERROR_LIMIT:], too_much


def _git_command(ws: Workspace, args: list[str]) -> list[str]:
    # An explicit git dir, which is bare, and no work tree: git never looks at the tree.
    return ["git", f"--git-dir={ws.git_dir}", *_HARDENING_OPTIONS, *args]


def _text(output: bytes | None) -> str:
    return (output or b"").decode(errors="replace").strip()


def _failure_text(summary: str, detail: str, token: str | None) -> str:
    if token:
        for secret in (_basic_credentials(token), f"x-access-token:{token}", token):
            detail = detail.replace(secret, "***")
    if len(detail) > ERROR_TEXT_LIMIT:
        detail = "..." + detail[-ERROR_TEXT_LIMIT:]
    return f"{summary}: {detail}" if detail else summary


def _parse_name_status(output: bytes) -> list[tuple[str, str]]:
    fields = output.decode(errors="replace").split("\0")
    entries = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i][0]
        # Renames and copies list the old path, then the new one.
        i += 2 if status in "RC" else 1
        entries.append((fields[i], status))
        i += 1
    return entries


def _parse_numstat(output: bytes) -> dict[str, tuple[int | None, int | None]]:
    fields = output.decode(errors="replace").split("\0")
    counts = {}
    i = 0
    while i < len(fields) and fields[i]:
        added, deleted, path = fields[i].split("\t", 2)
        if not path:  # a rename: old and new path follow as fields of their own
            path = fields[i + 2]
            i += 2
        # Binary files are counted as "-".
        counts[path] = (None if added == "-" else int(added), None if deleted == "-" else int(deleted))
        i += 1
    return counts


def _capped_diff(ws: Workspace, tree_id: str) -> str:
    # Read from the pipe and cut: the agent decides how large the diff is, not our memory or disk.
    command = _git_command(ws, ["diff-tree", "-r", "-p", "--find-renames", "--no-ext-diff",
                                "--no-textconv", "--no-color", "HEAD", tree_id])
    with subprocess.Popen(command, cwd=ws.root, env=_git_environment(ws, None),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, start_new_session=True) as process:
        assert process.stdout is not None
        head = process.stdout.read(DIFF_LIMIT_BYTES + 1)
        process.kill()  # done reading: whatever is left is not wanted
    if len(head) <= DIFF_LIMIT_BYTES:
        return head.decode(errors="replace")
    head = head[: head.rfind(b"\n", 0, DIFF_LIMIT_BYTES) + 1] or head[:DIFF_LIMIT_BYTES]
    return head.decode(errors="replace") + f"\n[diff truncated after {len(head):,} bytes]\n"


def _chown_recursive(tree: Path, uid: int, gid: int) -> None:
    # An explicit stack, not os.walk: the default branch may nest deeper than Python recurses.
    os.chown(tree, uid, gid)
    pending = [os.fspath(tree)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                os.chown(entry.path, uid, gid, follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
