"""Trees and repositories built to break the runner's own reading of the work tree: found by
attacking it, each kept as a test of what the runner does instead."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner import workspace
from runner.ignore_rules import GitIgnoreRules
from runner.snapshot import take
from runner.workspace import GitError, Workspace, collect_changes
from tests.hostile_repos import LIBRARY_ENV
from tests.test_tree_removal import make_deep_tree
from tests.test_workspace import (  # fixtures, and helpers
    _GitServer,
    _make_upstream,
    _owners,
    _prepare,
    needs_root,
    server,
    token,
    upstream,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SANDBOX_UID = 1000


def _plain_git(*args: str | os.PathLike, stdin: bytes | None = None) -> bytes:
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": "/nonexistent", "LC_ALL": "C",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, **LIBRARY_ENV}
    result = subprocess.run(["git", *map(os.fsencode, args)], input=stdin, env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def _rm_rf(path: Path) -> None:
    subprocess.run(["rm", "-rf", "--", str(path)], check=True, timeout=120)


# --- A deep tree cannot be removed, and then the service cannot start --------------------------


def test_a_workspace_deeper_than_python_recursion_is_removed(tmp_path):
    root = tmp_path / "workspaces" / "task-1"
    ws = Workspace(root=root, tree=root / "tree", git_dir=root / "git", branch="b")
    ws.tree.mkdir(parents=True)
    ws.git_dir.mkdir()
    make_deep_tree(ws.tree, 1500)  # a path of 3,000 bytes: nothing unusual for the agent
    try:
        workspace.remove(ws)
        assert not os.path.lexists(root)
    finally:
        _rm_rf(root)


def test_leftover_workspaces_deeper_than_python_recursion_are_removed(tmp_path):
    # recover(starting=True) calls this unguarded at start-up: if it raises, `serve` exits.
    base = tmp_path / "workspaces"
    (base / "deep" / "tree").mkdir(parents=True)
    (base / "plain" / "tree").mkdir(parents=True)
    make_deep_tree(base / "deep" / "tree", 1500)
    try:
        assert workspace.remove_leftovers(base) == ["deep", "plain"]
        assert list(base.iterdir()) == []
    finally:
        _rm_rf(base)


@needs_root
def test_a_deep_default_branch_is_handed_to_the_sandbox_user(tmp_path, server, token):
    upstream = _make_upstream(tmp_path, server, token, name="deep.git", files={"README.md": "x\n"})
    source = tmp_path / "source-deep.git"
    make_deep_tree(source, 1100)
    _plain_git("-C", source, "add", "--all")
    _plain_git("-C", source, "commit", "--quiet", "-m", "Deep")
    _plain_git("-C", source, "push", "--quiet", upstream.bare, "main")
    try:
        ws = _prepare(tmp_path, upstream, sandbox_owner=(SANDBOX_UID, SANDBOX_UID))
        bottom = os.lstat(b"/".join([os.fsencode(ws.tree), *[b"d"] * 1100, b"bottom.txt"]))
        assert (bottom.st_uid, bottom.st_gid) == (SANDBOX_UID, SANDBOX_UID)
    finally:
        _rm_rf(source)
        _rm_rf(tmp_path / "workspaces")


# --- .gitignore rules that cost the runner hours (and hold the GIL while they do) ---------------


def _take_in_a_child(tree: Path, timeout: float) -> subprocess.CompletedProcess:
    """snapshot.take in a child process, which can be stopped: a regex match cannot."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from runner import snapshot
        from runner.ignore_rules import GitIgnoreRules
        with GitIgnoreRules(timeout=60) as rules:
            result = snapshot.take(Path({str(tree)!r}), {{}}, rules)
        print(len(result.entries))
    """)
    try:
        return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                              timeout=timeout, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading the tree took over {timeout:g} s")


def test_a_backtracking_gitignore_pattern_cannot_stall_the_runner(tmp_path):
    # Git's wildmatch answers this at once; pathspec's regex backtracks for hours, in one
    # call that holds the GIL, so the webhook threads of the same process stop too.
    (tmp_path / ".gitignore").write_text("a*a*a*a*a*a*a*a*b\n")
    (tmp_path / ("a" * 100)).write_text("x\n")

    result = _take_in_a_child(tmp_path, timeout=20)

    assert result.returncode == 0, result.stderr.decode()


def _linked_rules(tree: Path, copies: int) -> None:
    # 190 KB of distinct patterns; a hard link per directory costs no disk.
    patterns = [f"{n:05x}" for n in range(0, 0x100000, 33)][:30_000]
    rules = tree / ".gitignore"
    rules.write_text("\n".join(patterns) + "\n")
    for n in range(copies):
        directory = tree / f"d{n}"
        directory.mkdir()
        os.link(rules, directory / ".gitignore")
        (directory / "file.txt").write_text("x\n")


def test_one_large_gitignore_linked_into_many_directories_is_read_in_bounded_time(tmp_path):
    _linked_rules(tmp_path, 30)  # 5.9 MB of rules: within the limit

    result = _take_in_a_child(tmp_path, timeout=30)

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.split() == [b"61"]  # 31 .gitignore files and 30 file.txt


def test_more_gitignore_rules_than_the_limit_fail_clearly(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    _linked_rules(ws.tree, 60)  # 11.5 MB of rules

    with pytest.raises(GitError, match="hold more than 8 MB of rules"):
        collect_changes(ws)


# --- Where the runner's .gitignore reading differs from `git add --all` -------------------------


def _git_would_add(tree: Path, git_dir: Path) -> set[tuple[str, bytes]]:
    _plain_git("init", "--quiet", "--bare", git_dir)
    _plain_git("--git-dir", git_dir, "--work-tree", tree, "add", "--all")
    listing = _plain_git("--git-dir", git_dir, "ls-files", "-s", "-z")
    added = set()
    for record in filter(None, listing.split(b"\0")):
        meta, _, path = record.partition(b"\t")
        added.add((meta.split()[0].decode(), path))
    return added


def _runner_proposes(tree: Path) -> set[tuple[str, bytes]]:
    with GitIgnoreRules(timeout=60) as rules:
        return {(entry.mode, entry.path) for entry in take(tree, {}, rules).entries}


BIG_COMMENT = b"".join(b"# %06d padding padding padding padding padding padding padding\n" % n
                       for n in range(5000))  # about 330 KB: more than the runner reads

IGNORE_CASES = {
    # Ignore everything but directories and Python files: a common allow-list idiom.
    "allow-list-idiom": ({".gitignore": b"*\n!*/\n!*.py\n"}, ["top.py", "src/app.py", "src/notes.txt"]),
    # `foo/**` matches what is inside foo, not foo itself, so a negation can bring a file back.
    "contents-then-negation": ({".gitignore": b"foo/**\n!foo/keep\n"}, ["foo/keep", "foo/other", "x"]),
    # A negation that matches a parent directory says nothing about a directory inside it.
    "negated-parent": ({".gitignore": b"build/\n!/docs/\n"}, ["docs/build/out.o", "docs/index.md"]),
    "negated-parent-in-a-nested-file": ({".gitignore": b"*.log\n", "sub/.gitignore": b"!/*\n"},
                                        ["sub/deep/x.log", "sub/keep.txt"]),
    "later-pattern-wins-for-a-directory": ({".gitignore": b"!**\nbuild\n"}, ["build/out.o", "src.c"]),
    # Git splits a .gitignore at "\n" only, and skips a UTF-8 byte order mark.
    "form-feed-in-a-pattern": ({".gitignore": b"a\x0cb\n"}, ["a", "b", "c"]),
    "line-separator-in-a-pattern": ({".gitignore": "a\u2028b\n".encode()}, ["a", "b", "c"]),
    "byte-order-mark": ({".gitignore": b"\xef\xbb\xbfbuild/\n"}, ["build/out.o", "src.c"]),
    # Git's wildmatch works on bytes and knows POSIX classes.
    "question-mark-and-a-two-byte-name": ({".gitignore": b"?.txt\n"}, ["\u00e9.txt", "a.txt"]),
    "negated-bracket-and-a-two-byte-name": ({".gitignore": b"[!a]\n"}, ["\u00e9", "b", "a"]),
    "posix-character-class": ({".gitignore": b"log[[:digit:]].txt\n"}, ["log1.txt", "loga.txt"]),
    # A name may end in a newline; `$` in a Python regex matches before it.
    "newline-at-the-end-of-a-name": ({".gitignore": b"notes\n"}, ["notes\n", "other"]),
    # A trailing backslash escapes nothing: git lets the pattern match nothing.
    "trailing-backslash": ({".gitignore": b"foo\\\n"}, ["foo", "foo\\", "bar"]),
    # Git reads the whole file; the runner cuts it at 256 KiB, here in the middle of a comment.
    "rules-after-256-KiB": ({".gitignore": BIG_COMMENT + b"secret.txt\n"}, ["secret.txt", "app.py"]),
}


@pytest.mark.parametrize(("rules", "files"), list(IGNORE_CASES.values()), ids=list(IGNORE_CASES))
def test_gitignore_rules_are_read_as_git_reads_them(tmp_path, rules, files):
    tree = tmp_path / "tree"
    for path, content in rules.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(content)
    for path in files:
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text("x\n")

    assert _runner_proposes(tree) == _git_would_add(tree, tmp_path / "git")


# --- Paths git's update-index ignores without failing -------------------------------------------


def test_paths_git_will_not_index_are_left_out_not_silently_dropped(tmp_path, upstream):
    # update-index prints "Ignoring path ..." for these and exits 0, so they vanish unreported.
    ws = _prepare(tmp_path, upstream)
    (ws.tree / "notes\\.git").write_text("a backslash, then .git: git refuses it\n")
    (ws.tree / "gi7eba~1").symlink_to("README.md")  # an NTFS short name of .gitmodules
    (ws.tree / ".gitmodules:stream").symlink_to("README.md")

    changes = collect_changes(ws)

    reported = {f.path for f in changes.files} | {item.path for item in changes.left_out}
    assert {"notes\\.git", "gi7eba~1", ".gitmodules:stream"} <= reported


def test_a_tracked_file_replaced_by_a_symlink_git_will_not_index_is_kept(tmp_path, server, token):
    upstream = _make_upstream(tmp_path, server, token, name="shortname.git",
                              files={"README.md": "x\n", "gi7eba~1": "a regular file may have this name\n"})
    ws = _prepare(tmp_path, upstream)
    (ws.tree / "gi7eba~1").unlink()
    (ws.tree / "gi7eba~1").symlink_to("README.md")

    changes = collect_changes(ws)

    # Left out, so HEAD's version stays: nothing is deleted.
    assert changes.files == []
    assert [item.path for item in changes.left_out] == ["gi7eba~1"]


def test_a_default_branch_path_git_will_not_index_is_never_deleted(tmp_path, server, token):
    upstream = _make_upstream(tmp_path, server, token, name="backslash.git", files={"README.md": "x\n"})
    # GitHub's fsck accepts this name; git's verify_path (core.protectNTFS) refuses to index it.
    blob = _plain_git("--git-dir", upstream.bare, "hash-object", "-w", "--stdin", stdin=b"kept\n")
    head_tree = _plain_git("--git-dir", upstream.bare, "ls-tree", "-z", "main")
    listing = head_tree + b"100644 blob " + blob.strip() + b"\tdocs\\.git\0"
    tree = _plain_git("--git-dir", upstream.bare, "mktree", "-z", stdin=listing).strip()
    commit = _plain_git("--git-dir", upstream.bare, "commit-tree", "-p", "main", "-m", "Add", tree).strip()
    _plain_git("--git-dir", upstream.bare, "update-ref", "refs/heads/main", commit)

    try:
        ws = _prepare(tmp_path, upstream)
    except GitError:
        return  # refusing such a repository is fine too
    changes = collect_changes(ws)  # the agent changed nothing

    assert changes.files == []


# --- A default branch whose tree git's fsck would refuse --------------------------------------


def _push_tree(upstream, entries: list[tuple[bytes, bytes, bytes]]) -> None:
    """A commit on main whose tree holds exactly `entries` (mode, name, hex id), in that order,
    written raw: git's own tools would refuse or fix such a tree."""
    raw = b"".join(mode + b" " + name + b"\0" + bytes.fromhex(sha.decode()) for mode, name, sha in entries)
    tree = _plain_git("--git-dir", upstream.bare, "hash-object", "-t", "tree", "-w", "--literally",
                      "--stdin", stdin=raw).strip()
    commit = _plain_git("--git-dir", upstream.bare, "commit-tree", "-m", "Odd", tree).strip()
    _plain_git("--git-dir", upstream.bare, "update-ref", "refs/heads/main", commit)


@pytest.mark.parametrize("shape", ["duplicate names", "a submodule and a directory of one name"])
def test_a_default_branch_with_a_malformed_tree_is_refused(tmp_path, upstream, shape):
    blob = _plain_git("--git-dir", upstream.bare, "hash-object", "-w", "--stdin", stdin=b"x\n").strip()
    if shape == "duplicate names":
        entries = [(b"100644", b"x", blob), (b"100644", b"x", blob)]
    else:
        inner = _plain_git("--git-dir", upstream.bare, "mktree", "-z",
                           stdin=b"100644 blob %s\tf\0" % blob).strip()
        entries = [(b"160000", b"x", b"1" * 40), (b"40000", b"x", inner)]
    _push_tree(upstream, entries)

    with pytest.raises(GitError, match="malformed tree"):
        _prepare(tmp_path, upstream)
    assert not (tmp_path / "workspaces" / "task-1").exists()
