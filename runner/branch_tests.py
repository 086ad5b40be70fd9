"""The repository's `test` commands on a side-by-side member's branch, for the comparison.

The runner runs them, never an agent: in a fresh sandbox, on a fresh checkout of the very commit
the member pushed (nothing the agent left in its own tree comes along), after the agent finished.

The agent's code never runs on a network. The sandbox starts on the files of the commit the
member started from, and the repository's `setup` commands run there as they did for the agent
(on ASYNC_CODE_SETUP_NETWORK when it is set); the member's own files wait in a read-only mount
beside the tree. Only once the sandbox is offline, and checked to be, are they copied into the
tree (and what the member deleted removed), by commands of the runner's own; then the tests run.
The sandbox is held to what the agent's was: the task's time, ASYNC_CODE_MAX_TREE_BYTES, and a
cancel, a shutdown or a superseded attempt stops it at once. Whatever happens, the result is one
of the words in runner/comparison.py; nothing here fails the task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import docker
from docker.types import Mount

from app.store import Store
from runner.cancel_watch import CancelWatch
from runner.comparison import TESTS_FAILED, TESTS_NOT_RUN, TESTS_PASSED, TESTS_TIMED_OUT
from runner.disk_watch import DiskWatch
from runner.sandbox import (DockerDeployment, SandboxError, SandboxGone, SandboxLimits,
                            offline_problem, sandbox_network)
from runner.workspace import TestCheckout

log = logging.getLogger(__name__)

OUTPUT_KEPT = 8_000  # characters of a command's output read back
OUTPUT_SHOWN = 1_500  # of the end of a failing test's output, for the comparison
BRANCH_MOUNT = "/opt/async-code/branch"  # the member's files, read-only, until they go in
REMOVED_PER_COMMAND = 200  # paths per `rm`, well within any argument list's limit


def _no_abort() -> str | None:
    return None


def run_tests(client: docker.DockerClient, *, checkout: TestCheckout, image: str, task_id: str,
              attempt: int, instance: str, user: str, mount_point: str, limits: SandboxLimits,
              setup: tuple[str, ...], tests: tuple[str, ...], setup_network_name: str | None,
              seconds: float, max_tree_bytes: int, store: Store,
              abort_reason: Callable[[], str | None] | None = None) -> tuple[str, str]:
    """Run `setup` on the start's files, then, offline, bring in the member's and run `tests`;
    how the tests went, and the end of what a test that failed or ran out of time printed."""
    tree = checkout.workspace.tree
    deployment = DockerDeployment(
        client, image=image, work_tree=tree, task_id=task_id, instance=instance, user=user,
        mount_point=mount_point, limits=limits,
        setup_network=sandbox_network(setup, setup_network_name), attempt=attempt,
        mounts=[Mount(target=BRANCH_MOUNT, source=str(checkout.branch), type="bind",
                      read_only=True)])
    deadline = time.monotonic() + seconds
    out_of_time = threading.Event()

    def time_is_up() -> None:
        out_of_time.set()
        deployment.stop()

    watchdog = threading.Timer(seconds, time_is_up)
    watchdog.daemon = True
    disk = DiskWatch(tree, max_tree_bytes, deployment.stop)
    cancel = CancelWatch(store, task_id, deployment.stop, abort_reason=abort_reason or _no_abort,
                         attempt=attempt)

    def stopped() -> bool:
        """Stopped from outside: a command's exit then says nothing about the tests."""
        return bool(cancel.handed_back or cancel.cancelled_by or cancel.superseded
                    or disk.problem or out_of_time.is_set())

    printed = [""]

    def step(runtime, command: str) -> str | None:
        """Run one command; None when it passed, else the verdict it makes."""
        ran = runtime.run(command, timeout=max(1.0, deadline - time.monotonic()),
                          max_output=OUTPUT_KEPT)
        if stopped():
            return _why_stopped(cancel, disk, out_of_time)
        printed[0] = ran.output[-OUTPUT_SHOWN:]
        if ran.timed_out:
            return TESTS_TIMED_OUT
        return TESTS_FAILED if ran.exit_code != 0 else None

    def verdict() -> str:
        try:
            watchdog.start()
            disk.start()
            cancel.start()
            runtime = deployment.start()
            for number, command in enumerate(setup, 1):
                if (made := step(runtime, command)) is not None:
                    return (f"{TESTS_NOT_RUN}: setup command {number} failed"
                            if made == TESTS_FAILED else made)
            deployment.disconnect_setup_network()
            if (problem := offline_problem(deployment.network_state())) is not None:
                return f"{TESTS_NOT_RUN}: {problem}"  # fail closed: the branch never runs online
            if (made := _bring_in(runtime, checkout, mount_point, deadline)) is not None:
                return _why_stopped(cancel, disk, out_of_time) if stopped() else made
            for command in tests:
                if (made := step(runtime, command)) is not None:
                    return made
            # Measured once more: the last command may have grown the tree since the last look.
            if disk.problem is not None or disk.check():
                return f"{TESTS_NOT_RUN}: {disk.problem}"
            return TESTS_PASSED
        except SandboxGone:
            return _why_stopped(cancel, disk, out_of_time)
        except SandboxError as error:
            log.warning("task %s: the test sandbox could not run: %s", task_id, error)
            return f"{TESTS_NOT_RUN}: the sandbox could not start"
        finally:
            watchdog.cancel()
            disk.stop()
            cancel.stop()
            deployment.stop()

    result = verdict()
    return result, printed[0] if result in (TESTS_FAILED, TESTS_TIMED_OUT) else ""


def _bring_in(runtime, checkout: TestCheckout, mount_point: str, deadline: float) -> str | None:
    """Replace the start's files with the member's, inside the offline sandbox, as its user;
    None when done, else why the tests cannot run. The commands are the runner's, and the
    paths go as arguments, never through a shell."""
    def run(argv: list[str]) -> bool:
        ran = runtime.run_process(argv, environment={}, on_stdout=lambda _chunk: None,
                                  timeout=max(1.0, deadline - time.monotonic()))
        return ran.exit_code == 0 and not ran.timed_out

    removed = [f"{mount_point}/{path}" for path in checkout.removed]
    if not all(map(_utf8, removed)):
        # Paths reach `rm` through the engine's API as text: a name that is not UTF-8 would
        # arrive as another name, and the file the member deleted stay.
        return f"{TESTS_NOT_RUN}: the branch deletes a file whose name is not UTF-8"
    for start in range(0, len(removed), REMOVED_PER_COMMAND):
        if not run(["rm", "-rf", "--", *removed[start:start + REMOVED_PER_COMMAND]]):
            return f"{TESTS_NOT_RUN}: the branch's deletions could not be made"
    if not run(["sh", "-c", 'tar -C "$1" -cf - . | tar -C "$2" -xf -', "sh", BRANCH_MOUNT,
                mount_point]):
        return f"{TESTS_NOT_RUN}: the branch's files could not be copied in (the image needs tar)"
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a byte of a name that is not UTF-8, kept as a surrogate
        return False
    return True


def _why_stopped(cancel: CancelWatch, disk: DiskWatch, out_of_time: threading.Event) -> str:
    if cancel.handed_back:
        return f"{TESTS_NOT_RUN}: the worker was shutting down"
    if cancel.cancelled_by is not None:
        return f"{TESTS_NOT_RUN}: cancelled"
    if cancel.superseded:
        return f"{TESTS_NOT_RUN}: the attempt was superseded"
    if disk.problem is not None:
        return f"{TESTS_NOT_RUN}: {disk.problem}"
    if out_of_time.is_set():
        return TESTS_TIMED_OUT
    return f"{TESTS_NOT_RUN}: the sandbox stopped"
