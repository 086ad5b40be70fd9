"""Host-side git for a task: fetch the repository, describe, commit and push the agent's work.

The sandbox mounts only the work tree (`<root>/tree`). The git directory sits beside it
(`<root>/git`) and every git command names both explicitly, so nothing the agent writes into
the tree -- a `.git` directory with hooks and config, `.gitattributes` naming filter drivers,
`.gitmodules` -- is ever read as configuration or executed on the host.

The installation token reaches git only through the child's environment as an HTTP header
(`GIT_CONFIG_*`); it is never written to disk, put in a URL or a command line, or logged.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

FETCH_DEPTH = 50
DIFF_LIMIT_BYTES = 1024 * 1024
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


class PushRejected(GitError):
    """The remote refused the branch (a hook, branch protection, or a non-fast-forward)."""


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


def prepare(
    base_dir: Path,
    task_id: str,
    *,
    clone_url: str,
    token: str,
    default_branch: str,
    branch: str,
    sandbox_owner: tuple[int, int] | None = None,
    timeout: float = 300,
) -> Workspace:
    """Fetch `default_branch` and check it out into a fresh work tree on a new `branch`."""
    if not _TASK_ID.fullmatch(task_id):
        raise ValueError(f"task id {task_id!r} is not a plain file name")
    _check_clone_url(clone_url)
    root = Path(base_dir) / task_id
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
        _run_git(ws, ["init", "--quiet", "--template=", f"--initial-branch={branch}"], what="git init")
        _fetch_default_branch(ws, clone_url, token, default_branch, timeout)
        _run_git(
            ws,
            ["checkout", "--quiet", "--no-track", "-B", branch, _base_ref(default_branch)],
            what="git checkout",
        )
        if sandbox_owner is not None:
            _chown_recursive(ws.tree, *sandbox_owner)
    except BaseException:
        remove(ws)
        raise
    log.info("prepared workspace %s: %s from %s", root, branch, default_branch)
    return ws


def collect_changes(ws: Workspace) -> Changes:
    """Stage everything in the tree and describe it against HEAD.

    Call only once the sandbox has stopped: git reads files by path, so an agent still
    running could swap a file for a symlink between git's check and its read.
    """
    # Paths named `.git` are never added, so an agent's own repository stays out of the commit.
    _run_git(ws, ["add", "--all"], what="git add")
    diff = ["diff", "--cached", "--find-renames", "--no-ext-diff", "--no-textconv", "-z"]
    statuses = _parse_name_status(_run_git(ws, [*diff, "--name-status", "HEAD"], what="git diff").stdout)
    counts = _parse_numstat(_run_git(ws, [*diff, "--numstat", "HEAD"], what="git diff").stdout)
    files = [FileStat(path, *counts.get(path, (None, None)), status) for path, status in statuses]
    return Changes(files=files, diff=_capped_diff(ws))


def commit(ws: Workspace, *, message: str, author_name: str, author_email: str) -> str:
    """Commit what `collect_changes` staged; returns the new commit's sha."""
    identity = {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }
    _run_git(
        ws,
        # `whitespace` keeps lines starting with '#', such as "#123 fixed" in a message.
        ["commit", "--quiet", "--no-verify", "--no-gpg-sign", "--cleanup=whitespace", "--file=-"],
        what="git commit",
        stdin=message.encode(),
        extra_env=identity,
    )
    head = _run_git(ws, ["rev-parse", "--verify", "HEAD^{commit}"], what="git rev-parse")
    sha = head.stdout.decode().strip()
    log.info("committed %s on %s in %s", sha, ws.branch, ws.root)
    return sha


def push(ws: Workspace, *, clone_url: str, token: str, timeout: float = 300) -> None:
    """Push the task's branch, and nothing else, to the same-named branch on the remote."""
    _check_clone_url(clone_url)
    ref = f"refs/heads/{ws.branch}"
    result = _run_git(
        ws,
        ["push", "--porcelain", "--no-verify", "--recurse-submodules=no", clone_url, f"{ref}:{ref}"],
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


def remove(ws: Workspace) -> None:
    """Delete the whole workspace, whoever owns the tree and whatever its permissions."""
    _remove_root(ws.root)


def remove_leftovers(base_dir: Path, keep: Collection[str] = ()) -> list[str]:
    """Delete the workspaces of tasks not in `keep` (left by a crash); returns their task ids."""
    if not base_dir.is_dir():
        return []
    removed = []
    for entry in sorted(base_dir.iterdir()):
        if entry.name not in keep and entry.is_dir() and not entry.is_symlink():
            _remove_root(entry)
            removed.append(entry.name)
    return removed


def _remove_root(root: Path) -> None:
    if not os.path.lexists(root):
        return
    try:
        shutil.rmtree(root)
    except PermissionError:
        # Only a non-root service meets this: the agent left directories it cannot write.
        _make_directories_writable(root)
        shutil.rmtree(root)


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


def _base_ref(default_branch: str) -> str:
    return f"refs/remotes/origin/{default_branch}"


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
    stdout: int | IO[bytes] = subprocess.PIPE,
    extra_env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    # Naming the git dir means git never looks for one in the tree. It also skips git's
    # ownership check (that guards discovery only), so no safe.directory is needed for a
    # tree owned by the sandbox user.
    command = ["git", f"--git-dir={ws.git_dir}", f"--work-tree={ws.tree}", *_HARDENING_OPTIONS, *args]
    env = _git_environment(ws, token) | (extra_env or {})
    # A session of its own, so a timeout can kill git's helpers (git-remote-https) with it.
    with subprocess.Popen(
        command,
        cwd=ws.root,
        env=env,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=stdout,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise GitError(f"{what} timed out after {timeout:g} s") from None
    result = subprocess.CompletedProcess(command, process.returncode, out, err)
    if check and result.returncode != 0:
        raise GitError(_failure_text(f"{what} failed", _text(err), token))
    return result


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


def _capped_diff(ws: Workspace) -> str:
    # Spooled to a file: the agent decides how large the diff is, not our memory.
    with tempfile.TemporaryFile() as spool:
        _run_git(
            ws,
            ["diff", "--cached", "--find-renames", "--no-ext-diff", "--no-textconv", "--no-color", "HEAD"],
            what="git diff",
            stdout=spool,
        )
        size = spool.tell()
        spool.seek(0)
        head = spool.read(DIFF_LIMIT_BYTES)
    if size <= DIFF_LIMIT_BYTES:
        return head.decode(errors="replace")
    head = head[: head.rfind(b"\n") + 1] or head
    return head.decode(errors="replace") + f"\n[diff truncated: {len(head)} of {size} bytes shown]\n"


def _chown_recursive(tree: Path, uid: int, gid: int) -> None:
    os.chown(tree, uid, gid)
    for directory, subdirectories, files in os.walk(tree):
        for name in subdirectories + files:
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)


def _make_directories_writable(root: Path) -> None:
    def make_writable(path: str) -> None:
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):  # never a symlink: chmod would follow it out of the tree
            try:
                os.chmod(path, stat.S_IMODE(mode) | stat.S_IRWXU)
            except PermissionError:
                pass  # another user's directory; rmtree will report it

    make_writable(str(root))
    # Top-down, so each directory is opened up before the walk lists it.
    for directory, subdirectories, _ in os.walk(root):
        for name in subdirectories:
            make_writable(os.path.join(directory, name))
