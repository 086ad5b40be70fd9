"""Hostile trees against .gitignore matching, the disk watch and tree removal: found by a
second attack, each kept as a test of what the runner does instead."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest

from runner import tree_removal
from runner.disk_watch import DiskWatch, disk_usage
from runner.ignore_rules import GitIgnoreRules, IgnoreRulesError
from runner.tree_removal import remove_tree
from tests.test_hostile_trees import _git_would_add, _runner_proposes
from tests.unprivileged import needs_root, run_as

SERVICE_UID = 1000


# --- .gitignore: a path is read as a pathspec, so a leading ":" is pathspec magic ----------------


def test_a_root_name_starting_with_a_colon_is_matched_as_itself(tmp_path):
    # `:foo`, `:(top)foo` and `:(prefix:0)foo` are asked about as `foo`: the first is left out
    # by the rule `foo`, and `:bar`, which the rule `:bar` ignores, is proposed.
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / ".gitignore").write_bytes(b"foo\n:bar\n")
    for name in (":foo", ":(top)foo", ":(prefix:0)foo", ":bar", "other"):
        (tree / name).write_text("x\n")

    assert _runner_proposes(tree) == _git_would_add(tree, tmp_path / "git")


def test_a_root_directory_starting_with_a_colon_gets_its_own_rules(tmp_path):
    # Everything under `:src/` is matched as if it were under `src/`, with src's rules.
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / ".gitignore").write_bytes(b"*\n")
    (tree / ":src").mkdir()
    (tree / ":src" / "main.c").write_text("int main;\n")

    assert _runner_proposes(tree) == _git_would_add(tree, tmp_path / "git")


def test_a_root_name_with_unsupported_pathspec_magic_is_proposed(tmp_path):
    # git check-ignore dies ("pathspec magic not supported") on `:(icase)...`, `:!...`, so one
    # file name fails the whole task although `git add --all` takes it.
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in (":(icase)README", ":!notes", "app.py"):
        (tree / name).write_text("x\n")

    assert _runner_proposes(tree) == _git_would_add(tree, tmp_path / "git")


# --- .gitignore: the deadline ---------------------------------------------------------------------


def test_the_deadline_bounds_deep_directories_too():
    # Each directory 16 or more levels deep gets a git process of its own, given the time that
    # is left, or 0.1 s once none is: a process takes about 3 ms, so a tree of many deep
    # directories is walked for as long as it has directories.
    deep = b"/".join([b"d"] * 20)
    started = time.monotonic()
    with pytest.raises(IgnoreRulesError, match="too long"):
        with GitIgnoreRules(timeout=0.5) as rules:
            rules.enter(b"", b"*.log\n")
            while time.monotonic() - started < 5:
                rules.ignored(deep, [(b"x.log", False), (b"y", False)])


def test_running_out_of_time_is_reported_as_such_not_as_a_broken_pipe():
    # Once git is killed, the request left in the pipe's buffer makes close() raise
    # BrokenPipeError over the IgnoreRulesError; collect_changes then reports "Broken pipe".
    with pytest.raises(IgnoreRulesError, match="too long"):
        with GitIgnoreRules(timeout=0.3) as rules:
            rules.enter(b"", b"x\n")
            time.sleep(0.6)
            rules.ignored(b"", [(b"a", False)])


# --- The disk watch --------------------------------------------------------------------------------


def test_empty_files_are_not_free(tmp_path):
    # Inodes run out before blocks do: an empty file or a short symlink takes no block, and the
    # root directory's own size is not counted, so millions of names in the root cost nothing.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for directory in (tree, tree / "sub"):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for n in range(5000):
                os.close(os.open(f"f{n}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
        finally:
            os.close(fd)

    assert disk_usage(tree) >= 10_000 * 256  # at least an ext4 inode for each


@needs_root
def test_a_directory_the_agent_locked_is_still_measured():
    # Without root the sandbox runs as the service's uid: `chmod 000` on a directory hides
    # everything in it from the watch, which counts it as empty.
    base = Path(tempfile.mkdtemp(prefix="attack2-watch-"))
    try:
        tree = base / "tree"
        (tree / "locked").mkdir(parents=True)
        (tree / "locked" / "big").write_bytes(os.urandom(8 * 1024 * 1024))
        for path in (base, tree, tree / "locked", tree / "locked" / "big"):
            os.chown(path, SERVICE_UID, SERVICE_UID)
        (tree / "locked").chmod(0o000)

        def measure() -> None:
            assert disk_usage(tree) >= 8 * 1024 * 1024

        error = run_as(SERVICE_UID, measure)
        assert error is None, error
    finally:
        subprocess.run(["rm", "-rf", "--", str(base)], check=True, timeout=120)


# --- Tree removal ----------------------------------------------------------------------------------


def test_removing_a_wide_directory_holds_a_bounded_number_of_names(tmp_path):
    # _entries() lists a whole directory into memory (about 160 bytes a name here, more for
    # long names): ten million empty files make the service hold gigabytes.
    tree = tmp_path / "tree"
    (tree / "wide").mkdir(parents=True)
    fd = os.open(tree / "wide", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for n in range(20_000):
            os.close(os.open(f"a-name-of-some-length-{n:08d}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)

    tracemalloc.start()
    try:
        assert remove_tree(tree) is True
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 1024 * 1024
