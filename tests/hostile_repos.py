"""Repositories an agent, or a script of the repository that it runs, can leave in its tree.

Any directory of the tree can become a valid git repository whose config, hooks and attributes
name commands. Each planted command touches a marker of its own, so a test can tell which ran.
Shared by the workspace tests and the end-to-end tests.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

PLANTED_CONFIG = """\
[core]
\thooksPath = {hooks}
\tfsmonitor = touch '{markers}/fsmonitor'
\tsshCommand = touch '{markers}/ssh-command'
\tpager = touch '{markers}/pager'
\teditor = touch '{markers}/editor'
\taskPass = touch '{markers}/askpass'
\talternateRefsCommand = touch '{markers}/alternate-refs'
[filter "evil"]
\tclean = touch '{markers}/clean-filter'
\tsmudge = touch '{markers}/smudge-filter'
\trequired = true
[filter "evil-process"]
\tprocess = touch '{markers}/process-filter'
\trequired = true
[diff]
\texternal = touch '{markers}/diff-external'
[diff "evil"]
\ttextconv = touch '{markers}/textconv'
\tcommand = touch '{markers}/diff-command'
[credential]
\thelper = !touch '{markers}/credential-helper'
[gpg]
\tprogram = touch '{markers}/gpg'
[commit]
\tgpgSign = true
[remote "origin"]
\turl = ssh://example.invalid/repo.git
"""
PLANTED_ATTRIBUTES = "*.py filter=evil diff=evil\n*.c filter=evil-process\n"
PLANTED_HOOKS = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "pre-push",
                 "post-checkout", "post-index-change", "reference-transaction", "pre-auto-gc",
                 "post-rewrite", "fsmonitor-watchman")
# A fixed identity and dates: the same files give the same commit wherever they are committed.
LIBRARY_ENV = {
    "GIT_AUTHOR_NAME": "Library Author", "GIT_AUTHOR_EMAIL": "library@example.com",
    "GIT_COMMITTER_NAME": "Library Author", "GIT_COMMITTER_EMAIL": "library@example.com",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}
LIBRARY_FILES = {"lib.py": "VALUE = 1\n", "src/core.c": "int core(void) { return 0; }\n"}


def git(*args: str | Path, check: bool = True) -> str:
    """Plain git with no system or user config (not the code under test)."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": "/nonexistent", "LC_ALL": "C",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, **LIBRARY_ENV}
    result = subprocess.run(["git", *map(str, args)], env=env, capture_output=True, timeout=60,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"git {args} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def commit_library(directory: Path) -> str:
    """A valid repository at `directory` holding LIBRARY_FILES; returns its HEAD commit."""
    git("init", "--quiet", "--template=", "--initial-branch=main", directory)
    for path, content in LIBRARY_FILES.items():
        _write(directory / path, content)
    git("-C", directory, "add", "--all")
    git("-C", directory, "commit", "--quiet", "-m", "Library")
    return git("-C", directory, "rev-parse", "HEAD").strip()


def plant_repository(directory: Path, markers: Path) -> None:
    """Make `directory` a valid repository (HEAD = `commit_library`'s) whose config, hooks and
    attributes run commands, with a dirty file and stale index times, so git must read content."""
    commit_library(directory)
    agent_git = directory / ".git"
    hooks = agent_git / "planted-hooks"
    for hooks_dir in (agent_git / "hooks", hooks):
        for name in PLANTED_HOOKS:
            _write(hooks_dir / name, f"#!/bin/sh\ntouch '{markers}/hook-{name}'\n")
            (hooks_dir / name).chmod(0o755)
    with (agent_git / "config").open("a") as config:
        config.write(PLANTED_CONFIG.format(hooks=hooks, markers=markers))
    _write(directory / ".gitattributes", PLANTED_ATTRIBUTES)
    _write(directory / "lib.py", "VALUE = 2\n")  # the same size as before
    os.utime(directory / "lib.py", (1, 1))
    os.utime(directory / "src" / "core.c", (1, 1))


def planted_repository_tar(scratch: Path, markers: Path) -> bytes:
    """`plant_repository` as a gzipped tar archive, for an agent to unpack in its sandbox."""
    plant_repository(scratch, markers)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for entry in sorted(scratch.iterdir()):
            tar.add(entry, arcname=entry.name)
    return archive.getvalue()


def assert_the_plants_are_live(directory: Path, markers: Path) -> None:
    """Plain git that discovers the planted repository does run its commands: the plants work."""
    git("-C", directory, "status", check=False)
    ran = {marker.name for marker in markers.iterdir()}
    assert {"fsmonitor", "process-filter"} <= ran, ran
    # A process filter that does not speak its protocol stops git: take it away to see the rest.
    _write(directory / ".gitattributes", "*.py filter=evil diff=evil\n")
    git("-C", directory, "status", check=False)
    git("-C", directory, "diff", check=False)
    git("-C", directory, "commit", "--quiet", "-am", "discovered", check=False)
    ran = {marker.name for marker in markers.iterdir()}
    assert {"clean-filter", "diff-command", "hook-pre-commit", "hook-commit-msg"} <= ran, ran
    for marker in markers.iterdir():
        marker.unlink()
