"""runner.tree_removal: deleting whatever the agent left, without ever stopping the service."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from runner.tree_removal import remove_tree
from tests.unprivileged import needs_root, run_as

SERVICE_UID = 1000  # an unprivileged service user for the tests that drop root


def make_deep_tree(root: Path, levels: int) -> None:
    """`levels` nested directories with a file at the bottom, built relative to open
    directories: the full path is longer than any path call accepts."""
    root.mkdir(exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as bottom:
        bottom.write("deep\n")
    os.close(fd)


@pytest.fixture
def base():
    """A directory outside pytest's tmp_path, whose own clean-up could not remove what these
    tests build if the code under test failed."""
    path = Path(tempfile.mkdtemp(prefix="async-code-removal-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", "--", str(path)], check=True, timeout=120)


def test_a_tree_deeper_than_recursion_and_path_limits_is_removed(base):
    tree = base / "tree"
    make_deep_tree(tree, 3000)  # 6,000 characters of path: beyond PATH_MAX

    assert remove_tree(tree) is True
    assert not os.path.lexists(tree)


def test_symlinks_are_removed_never_followed(base):
    outside = base / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep\n")
    outside.chmod(0o555)
    tree = base / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "link-dir").symlink_to(outside)
    (tree / "sub" / "link-file").symlink_to(outside / "keep.txt")
    (tree / "loop").symlink_to("loop")
    os.link(outside / "keep.txt", tree / "hard-link")

    assert remove_tree(tree) is True
    assert not os.path.lexists(tree)
    assert (outside / "keep.txt").read_text() == "keep\n"
    assert stat.S_IMODE(outside.stat().st_mode) == 0o555


def test_names_that_collide_with_the_removal_s_own_are_handled(base):
    tree = base / "tree"
    (tree / ".removing-0" / "a").mkdir(parents=True)
    (tree / ".removing-0" / "a" / "file").write_text("x")
    (tree / ".removing-1").write_text("a file where a moved directory would go")
    (tree / "x" / "y" / "z").mkdir(parents=True)
    (tree / "x" / "y" / "z" / "f").write_text("x")

    assert remove_tree(tree) is True
    assert not os.path.lexists(tree)


def test_a_missing_path_or_a_plain_file_is_fine(base):
    assert remove_tree(base / "never-there") is True
    (base / "file").write_text("x")
    assert remove_tree(base / "file") is True
    assert not os.path.lexists(base / "file")


@needs_root
def test_an_unprivileged_service_removes_directories_the_agent_locked(base):
    tree = base / "tree"
    for name, mode in (("no-access", 0o000), ("search-only", 0o100), ("read-only", 0o555),
                       ("write-only", 0o200)):
        directory = tree / "locked" / name
        (directory / "inner").mkdir(parents=True)
        (directory / "inner" / "file").write_text("x")
        (directory / "file").write_text("x")
        (directory / "file").chmod(0o000)
        directory.chmod(mode)
    (tree / "locked").chmod(0o500)
    for path in [base, *sorted(base.rglob("*"))]:
        os.chown(path, SERVICE_UID, SERVICE_UID, follow_symlinks=False)
    make_deep_tree(tree / "deep", 1500)  # too deep for rglob: chown hands it over
    subprocess.run(["chown", "-R", "-h", f"{SERVICE_UID}:{SERVICE_UID}", "deep"], cwd=tree, check=True)

    def remove_as_the_service() -> None:
        assert remove_tree(tree) is True

    error = run_as(SERVICE_UID, remove_as_the_service)

    assert error is None, error
    assert not os.path.lexists(tree)


@needs_root
def test_what_cannot_be_removed_is_reported_and_the_rest_still_goes(base):
    tree = base / "tree"
    (tree / "stuck").mkdir(parents=True)
    (tree / "stuck" / "root-owned").write_text("the service user cannot delete this\n")
    for n in range(5):
        (tree / f"other-{n}" / "sub").mkdir(parents=True)
        (tree / f"other-{n}" / "sub" / "f").write_text("x")
    for path in [base, tree, *[p for p in tree.rglob("*") if "stuck" not in p.parts]]:
        os.chown(path, SERVICE_UID, SERVICE_UID, follow_symlinks=False)
    # "stuck" stays root's and read-only: its entry cannot be removed by the service user.
    (tree / "stuck").chmod(0o755)

    error = run_as(SERVICE_UID, lambda: (base / "result").write_text(str(remove_tree(tree))))

    assert error is None, error
    assert (base / "result").read_text() == "False"
    assert sorted(p.name for p in tree.iterdir()) == ["stuck"]
    assert (tree / "stuck" / "root-owned").exists()
