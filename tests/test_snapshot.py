"""runner.snapshot: what is proposed from a work tree, decided without git reading it."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from runner import snapshot
from runner.ignore_rules import GitIgnoreRules, IgnoreRulesError
from runner.snapshot import (EXECUTABLE, GITLINK, REGULAR, SYMLINK, Entry, LeftOut, Tracked,
                             file_mode, is_dot_git, is_symlink_git_refuses, take)

BLOB = "1" * 40
SUBMODULE_COMMIT = "2" * 40


@pytest.mark.parametrize(("name", "dot_git"), [
    (".git", True),
    (".GIT", True),
    (".Git", True),
    (".git.", True),
    (".git ", True),
    (".git. . ", True),
    (".git::$INDEX_ALLOCATION", True),
    (".git:stream", True),
    (".git\\hooks", True),
    ("git~1", True),
    ("GIT~1", True),
    ("git~1.", True),
    (".g\u200cit", True),
    ("\ufeff.git", True),
    (".gi\u200dt\u200e", True),
    (".github", False),
    (".gitignore", False),
    (".gitmodules", False),
    ("git", False),
    ("git~10", False),
    ("git~2", False),
    ("a.git", False),
    (".git-blame-ignore-revs", False),
    ("..git", False),
    ("notes\\.git", True),
    ("x\\git~1", True),
    ("a\\b", False),
])
def test_is_dot_git(name, dot_git):
    assert is_dot_git(name) is dot_git


@pytest.mark.parametrize(("name", "refused"), [
    (".gitmodules", True),
    (".GITMODULES", True),
    (".gitmodules.", True),
    (".gitmodules ", True),
    (".git\u200cmodules", True),
    ("gitmod~1", True),
    ("GITMOD~4", True),
    (".gitmodules:stream", True),
    ("gi7eba~1", True),
    ("GI7EBA~9", True),
    ("gi7eb~12", True),
    ("gi7eba~0", False),
    ("gitmod~5", False),
    ("x\\.gitmodules", True),
    (".gitmodules-old", False),
    ("gitmodules", False),
    (".gitattributes", False),
])
def test_symlinks_git_refuses(name, refused):
    assert is_symlink_git_refuses(name) is refused


@pytest.mark.parametrize(("mode", "expected"), [
    (stat.S_IFREG | 0o644, REGULAR),
    (stat.S_IFREG | 0o600, REGULAR),
    (stat.S_IFREG | 0o744, EXECUTABLE),
    (stat.S_IFREG | 0o755, EXECUTABLE),
    (stat.S_IFREG | 0o654, REGULAR),  # only the owner's x bit counts, as in git
    (stat.S_IFLNK | 0o777, SYMLINK),
    (stat.S_IFIFO | 0o644, None),
    (stat.S_IFSOCK | 0o755, None),
    (stat.S_IFCHR | 0o666, None),
    (stat.S_IFBLK | 0o660, None),
])
def test_file_mode(mode, expected):
    assert file_mode(mode) == expected


@pytest.fixture
def rules():
    with GitIgnoreRules(timeout=60) as git_rules:
        yield git_rules


def _write(path: Path, content: str | bytes = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _tracked(*paths: str, mode: str = REGULAR) -> dict[bytes, Tracked]:
    return {path.encode(): Tracked(mode, BLOB) for path in paths}


def _proposed(result: snapshot.Snapshot) -> dict[str, str]:
    return {os.fsdecode(entry.path): entry.mode for entry in result.entries}


def test_files_symlinks_and_modes_are_taken_and_git_directories_skipped(tmp_path, rules):
    _write(tmp_path / "README.md")
    (_write(tmp_path / "bin" / "run")).chmod(0o755)
    (tmp_path / "link").symlink_to("/etc/passwd")
    (tmp_path / "dir-link").symlink_to(tmp_path / "bin")
    for name in (".git", ".GIT", "git~1", ".git."):
        _write(tmp_path / "nested" / name / "config", "[core]\n")
    _write(tmp_path / "notes\\.git", "a backslash, then .git\n")
    _write(tmp_path / ".git" / "HEAD", "ref: refs/heads/main\n")
    _write(tmp_path / "nested" / "kept.py")

    result = take(tmp_path, {}, rules)

    assert _proposed(result) == {"README.md": REGULAR, "bin/run": EXECUTABLE, "link": SYMLINK,
                                 "dir-link": SYMLINK, "nested/kept.py": REGULAR}
    assert [(item.path, item.reason) for item in result.left_out] == [
        ("nested/.git.", "git does not accept this name"), ("nested/git~1", "git does not accept this name"),
        ("notes\\.git", "git does not accept this name")]
    [readme] = [e for e in result.entries if e.path == b"README.md"]
    assert (readme.source, readme.size, readme.sha) == (tmp_path / "README.md", 2, None)


def test_a_nested_repository_is_taken_as_plain_files(tmp_path, rules):
    _write(tmp_path / "pkg" / ".git" / "HEAD", "ref: refs/heads/main\n")
    _write(tmp_path / "pkg" / ".git" / "config", "[core]\n\tfsmonitor = touch /tmp/x\n")
    _write(tmp_path / "pkg" / "module.py")
    _write(tmp_path / "pkg" / "sub" / "deep.py")

    assert _proposed(take(tmp_path, {}, rules)) == {"pkg/module.py": REGULAR, "pkg/sub/deep.py": REGULAR}


def test_a_submodule_is_kept_and_what_the_agent_put_inside_it_left_out(tmp_path, rules):
    head = _tracked("README.md") | {b"vendor/lib": Tracked(GITLINK, SUBMODULE_COMMIT)}
    _write(tmp_path / "README.md")
    _write(tmp_path / "vendor" / "lib" / ".git" / "config", "[filter \"x\"]\n")
    _write(tmp_path / "vendor" / "lib" / "lib.py")
    _write(tmp_path / "vendor" / "lib" / "src" / "deep.c")
    _write(tmp_path / "vendor" / "other.txt")

    result = take(tmp_path, head, rules)

    assert _proposed(result) == {"README.md": REGULAR, "vendor/lib": GITLINK, "vendor/other.txt": REGULAR}
    [gitlink] = [e for e in result.entries if e.mode == GITLINK]
    assert gitlink == Entry(GITLINK, b"vendor/lib", sha=SUBMODULE_COMMIT)
    assert result.left_out == [LeftOut("vendor/lib/lib.py", "it is inside the submodule vendor/lib"),
                               LeftOut("vendor/lib/src/deep.c", "it is inside the submodule vendor/lib")]


@pytest.mark.parametrize("replacement", ["file", "symlink", "missing"])
def test_a_submodule_survives_whatever_replaced_its_directory(tmp_path, replacement, rules):
    head = {b"vendor/lib": Tracked(GITLINK, SUBMODULE_COMMIT)}
    if replacement == "file":
        _write(tmp_path / "vendor" / "lib", "not a directory\n")
    elif replacement == "symlink":
        (tmp_path / "vendor").mkdir()
        (tmp_path / "vendor" / "lib").symlink_to("/")

    result = take(tmp_path, head, rules)

    assert _proposed(result) == {"vendor/lib": GITLINK}
    expected = [] if replacement == "missing" else [LeftOut("vendor/lib", "a submodule is at this path")]
    assert result.left_out == expected


def test_a_file_where_a_submodule_s_parent_directory_was_is_left_out(tmp_path, rules):
    head = {b"vendor/lib": Tracked(GITLINK, SUBMODULE_COMMIT)}
    _write(tmp_path / "vendor", "flattened\n")

    result = take(tmp_path, head, rules)

    assert _proposed(result) == {"vendor/lib": GITLINK}
    assert result.left_out == [LeftOut("vendor", "it replaces a directory that holds a submodule")]


def test_gitignore_rules_apply_as_git_add_applies_them(tmp_path, rules):
    head = _tracked(".gitignore", "build/keep.txt", "logs/tracked.log")
    _write(tmp_path / ".gitignore", "build/\n*.log\n!important.log\nnode_modules\n/top-only.txt\n")
    _write(tmp_path / "build" / "out.o")
    _write(tmp_path / "build" / "keep.txt", "tracked, so taken although ignored\n")
    _write(tmp_path / "logs" / "tracked.log")
    _write(tmp_path / "logs" / "new.log")
    _write(tmp_path / "logs" / "important.log")
    _write(tmp_path / "web" / "node_modules" / "left-pad" / "index.js")
    _write(tmp_path / "top-only.txt")
    _write(tmp_path / "sub" / "top-only.txt")
    _write(tmp_path / "sub" / ".gitignore", "*.tmp\n!keep.log\n")
    _write(tmp_path / "sub" / "scratch.tmp")
    _write(tmp_path / "sub" / "keep.log")
    _write(tmp_path / "scratch.tmp")

    result = take(tmp_path, head, rules)

    assert set(_proposed(result)) == {
        ".gitignore", "build/keep.txt", "logs/tracked.log", "logs/important.log",
        "sub/top-only.txt", "sub/.gitignore", "sub/keep.log", "scratch.tmp"}
    assert result.left_out == []


def test_an_ignored_directory_is_not_listed_unless_it_holds_tracked_files(tmp_path, monkeypatch, rules):
    _write(tmp_path / ".gitignore", "node_modules/\n")
    _write(tmp_path / "node_modules" / "a" / "index.js")
    listed: list[Path] = []
    real_batches = snapshot._batches
    monkeypatch.setattr(snapshot, "_batches",
                        lambda directory: listed.append(directory) or real_batches(directory))

    take(tmp_path, {}, rules)

    assert tmp_path / "node_modules" not in listed


def test_a_symlinked_gitignore_is_not_followed(tmp_path, rules):
    _write(tmp_path / "elsewhere" / "rules", "*.txt\n")
    (tmp_path / ".gitignore").symlink_to(tmp_path / "elsewhere" / "rules")
    _write(tmp_path / "notes.txt")

    assert "notes.txt" in _proposed(take(tmp_path, {}, rules))


def test_what_git_cannot_hold_is_left_out_and_tracked_versions_kept(tmp_path, rules):
    head = _tracked("pipe", "README.md")
    os.mkfifo(tmp_path / "pipe")  # replaces a tracked file
    os.mkfifo(tmp_path / "new-pipe")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "sock"))
    (tmp_path / ".gitmodules").symlink_to("/etc/passwd")
    with open(tmp_path / "huge.bin", "wb") as huge:  # sparse: takes no disk
        huge.truncate(snapshot.GITHUB_FILE_LIMIT + 1)
    _write(tmp_path / "README.md")

    result = take(tmp_path, head, rules)

    assert result.left_out == [
        LeftOut(".gitmodules", "git does not accept a symlink under this name"),
        LeftOut("huge.bin", "it is larger than GitHub's 100 MB file limit"),
        LeftOut("new-pipe", "it is not a regular file, a directory or a symlink"),
        LeftOut("pipe", "it is not a regular file, a directory or a symlink"),
        LeftOut("sock", "it is not a regular file, a directory or a symlink"),
    ]
    # Leaving the agent's version out never deletes the tracked one.
    assert _proposed(result) == {"README.md": REGULAR, "pipe": REGULAR}
    [kept] = [e for e in result.entries if e.path == b"pipe"]
    assert (kept.sha, kept.source) == (BLOB, None)


def test_the_left_out_list_is_capped_but_counted(tmp_path, monkeypatch, rules):
    monkeypatch.setattr(snapshot, "LEFT_OUT_LISTED", 3)
    head = {b"lib": Tracked(GITLINK, SUBMODULE_COMMIT)}
    for n in range(10):
        _write(tmp_path / "lib" / f"f{n}")

    result = take(tmp_path, head, rules)

    assert len(result.left_out) == 3 and result.left_out_count == 10


def test_a_tree_deeper_than_python_recursion_is_walked(tmp_path, rules):
    levels = [tmp_path]
    for _ in range(1200):
        levels.append(levels[-1] / "d")
        levels[-1].mkdir()
    _write(levels[-1] / "bottom.txt")
    try:
        [entry] = take(tmp_path, {}, rules).entries
        assert entry.path == b"/".join([b"d"] * 1200) + b"/bottom.txt"
    finally:  # shutil.rmtree, which pytest cleans up with, recurses as deep as the tree
        (levels[-1] / "bottom.txt").unlink()
        for level in reversed(levels[1:]):
            level.rmdir()


def test_names_that_are_not_utf8_survive(tmp_path, rules):
    name = b"caf\xe9.txt"
    with open(os.path.join(os.fsencode(tmp_path), name), "wb") as handle:
        handle.write(b"latin-1\n")

    [entry] = take(tmp_path, {}, rules).entries
    assert entry.path == name


def test_the_walk_stops_at_the_first_new_file_past_the_limit(tmp_path, rules, monkeypatch):
    for n in range(20):
        _write(tmp_path / "a" / f"new-{n}")
        _write(tmp_path / "b" / f"new-{n}")
    head = _tracked(*(f"a/new-{n}" for n in range(20)))
    listed: list[Path] = []
    real_batches = snapshot._batches
    monkeypatch.setattr(snapshot, "_batches",
                        lambda directory: listed.append(directory) or real_batches(directory))

    with pytest.raises(snapshot.TooManyNewFiles):
        take(tmp_path, head, rules, max_new_files=5)
    assert take(tmp_path, head, rules, max_new_files=20).entries  # tracked files do not count


def test_a_deep_directory_then_a_shallow_match_is_answered(rules):
    # git 2.39's check-ignore crashes on this order of questions; the rules start it anew.
    deep = b"/".join(b"level%d" % n for n in range(30))
    rules.enter(b"", b"*.log\n")

    assert rules.ignored(deep, [(b"code.py", False), (b"debug.log", False)]) == {b"debug.log"}
    assert rules.ignored(b"a", [(b"run.log", False), (b"kept.py", False)]) == {b"run.log"}
    assert rules.ignored(b"", [(b"top.log", False), (b"a", True)]) == {b"top.log"}


def test_git_is_asked_only_where_a_gitignore_above_can_apply(rules):
    rules.enter(b"a/b", b"*.log\n")
    assert rules.ignored(b"a/b/c", [(b"x.log", False), (b"x.py", False)]) == {b"x.log"}
    rules._process.kill()  # from here on, asking git fails
    rules._process.wait()
    # No .gitignore in these or above them: nothing is ignored, and git is not asked.
    assert rules.ignored(b"", [(b"x.log", False)]) == set()
    assert rules.ignored(b"a", [(b"x.log", False)]) == set()
    assert rules.ignored(b"ab/b", [(b"x.log", False)]) == set()
    with pytest.raises(IgnoreRulesError):
        rules.ignored(b"a/b/d", [(b"x.log", False)])
