"""Attacks on the side-by-side test checkout: the start's files in the tree, the member's pushed
files apart in `<workspace>/branch`, brought in offline by `rm` and `tar` in the sandbox
(runner/workspace.py `prepare_test_checkout`, runner/branch_tests.py `_bring_in`)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from runner import branch_tests
from runner.sandbox import DockerDeployment, SandboxLimits
from runner import workspace
from runner.workspace import GitError, Workspace, prepare_test_checkout, push, remove
from tests.test_workspace import _commit, _prepare, server, token, upstream  # noqa: F401

PATH_MAX = 4096  # bytes a path handed to a system call may take, its NUL included


def test_a_path_the_agents_tree_holds_but_the_branch_dir_cannot_breaks_the_member(tmp_path,
                                                                               upstream):
    """The test checkout lives where the agent's workspace lived (same task, same attempt), but
    writes the pushed files under `branch/`, two bytes longer than `tree/`. A file whose path
    fits under the agent's tree (so the runner read, committed and pushed it) can then be too
    long under `branch/`: `_write_tree` raises OSError (ENAMETOOLONG), which `_test_branch`
    does not catch (it expects GitError or ValueError), so the member task crashes with an
    internal error instead of getting a "not run" verdict, although its pull request is open.
    The agent can aim for it: /proc/self/mountinfo in its sandbox shows its tree's host path.
    Safe: a path the tree could hold is a path the test checkout can hold (or the failure is a
    GitError, a "not run")."""
    ws = _prepare(tmp_path, upstream)
    room = PATH_MAX - 1 - len(os.fsencode(ws.tree)) - 1  # the longest relative path that fits
    parts = []
    while room > 0:
        part = min(200, room if room <= 200 else room - 1 - 10)  # leave room for the next one
        part = max(part, 1)
        parts.append("d" * part)
        room -= part + 1
    relative = "/".join(parts)
    target = ws.tree / relative
    assert len(os.fsencode(target)) == PATH_MAX - 1
    target.parent.mkdir(parents=True)
    target.write_text("fits under tree/\n")
    sha = _commit(ws)  # the runner reads and commits it: it fits
    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)
    assert remove(ws)  # as the member's run does before its tests

    try:
        checkout = prepare_test_checkout(tmp_path / "workspaces", "task-1", attempt=1,
                                         clone_url=upstream.url, token=upstream.token,
                                         branch=ws.branch, commit=sha, timeout=60)
    except GitError:
        return  # a "not run", as the contract says
    except OSError as error:
        pytest.fail(f"the test checkout crashed on a path the agent's tree held: {error!r}")
    assert (checkout.branch / relative).read_text() == "fits under tree/\n"


@pytest.fixture
def overlay(tmp_path, docker_client, sandbox_image):
    """A started test sandbox on a hand-made TestCheckout, with `_bring_in` still to run."""
    made = []

    def start(tree_files: dict[bytes, bytes], branch_files: dict[bytes, bytes],
              removed: tuple[str, ...]):
        root = tmp_path / "ws"
        tree, branch = root / "tree", root / "branch"
        for base, files in ((tree, tree_files), (branch, branch_files)):
            base.mkdir(parents=True)
            for name, content in files.items():
                path = os.path.join(os.fsencode(base), name)
                with open(path, "wb") as handle:
                    handle.write(content)
        checkout = workspace.TestCheckout(Workspace(root=root, tree=tree, git_dir=root / "git", branch="b"),
                                branch, removed)
        deployment = DockerDeployment(
            docker_client, image=sandbox_image, work_tree=tree,
            task_id=uuid.uuid4().hex, instance="overlay-attack",
            user=f"{os.getuid()}:{os.getgid()}", limits=SandboxLimits(),
            mounts=[branch_tests.Mount(target=branch_tests.BRANCH_MOUNT, source=str(branch),
                                       type="bind", read_only=True)])
        made.append(deployment)
        return checkout, deployment.start()

    yield start
    for deployment in made:
        deployment.stop()


def test_a_deleted_file_whose_name_is_not_utf8_stays_in_the_tree_the_tests_see(overlay):
    """`removed` holds str paths decoded with surrogateescape; they reach `rm` through the
    Docker API's JSON, where a lone surrogate becomes U+FFFD. `rm -rf` then removes a path
    that does not exist, says nothing (-f), and the file the member deleted is still in the
    tree its tests run on (or another file, named with U+FFFD, goes instead): the verdict is
    on a tree that is not the member's commit. Safe: the deletion is made, or the tests are
    "not run"."""
    gone = b"gone-\xff.txt"
    checkout, runtime = overlay({gone: b"deleted by the member\n", b"kept.txt": b"start\n"},
                                {b"kept.txt": b"member\n"}, (os.fsdecode(gone),))

    verdict = branch_tests._bring_in(runtime, checkout, "/workspace", time.monotonic() + 60)

    tree = os.fsencode(checkout.workspace.tree)
    if verdict is None:  # the tests would run: on the member's tree, without the deleted file
        assert Path(checkout.workspace.tree, "kept.txt").read_text() == "member\n"
    assert verdict is not None or not os.path.lexists(os.path.join(tree, gone)), \
        "the member deleted it, yet the tests run with it in the tree"
    assert verdict in (None, "not run: the branch deletes a file whose name is not UTF-8")
