"""The repository's `test` commands on a side-by-side member's branch, for the comparison.

The runner runs them, never an agent: in a fresh sandbox, on a fresh checkout of the very commit
the member pushed (nothing the agent left in its own tree comes along), after the agent finished.
The tree is the agent's work, so this sandbox never has a network, not even for `setup`: the
repository's `setup` commands run first, offline (with ASYNC_CODE_SETUP_NETWORK they would give
the agent's code a way out), then the tests. The sandbox is held to what the agent's was: the
task's time, ASYNC_CODE_MAX_TREE_BYTES, and a cancel or a shutdown stops it at once. Whatever
happens, the result is one of the words in runner/comparison.py; nothing here fails the task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker

from app.store import Store
from runner.cancel_watch import CancelWatch
from runner.comparison import TESTS_FAILED, TESTS_NOT_RUN, TESTS_PASSED, TESTS_TIMED_OUT
from runner.disk_watch import DiskWatch
from runner.sandbox import DockerDeployment, SandboxError, SandboxGone, SandboxLimits, offline_problem

log = logging.getLogger(__name__)

OUTPUT_KEPT = 8_000  # characters of a command's output read back (only its exit code counts)


def _no_abort() -> str | None:
    return None


def run_tests(client: docker.DockerClient, *, tree: Path, image: str, task_id: str, attempt: int,
              instance: str, user: str, mount_point: str, limits: SandboxLimits,
              setup: tuple[str, ...], tests: tuple[str, ...], seconds: float, max_tree_bytes: int,
              store: Store, abort_reason: Callable[[], str | None] | None = None) -> str:
    """Run `setup` then `tests` in a new offline sandbox on `tree`; how the tests went."""
    deployment = DockerDeployment(
        client, image=image, work_tree=tree, task_id=task_id, instance=instance, user=user,
        mount_point=mount_point, limits=limits, setup_network=None, attempt=attempt)
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

    def step(runtime, command: str) -> str | None:
        """Run one command; None when it passed, else the verdict it makes."""
        ran = runtime.run(command, timeout=max(1.0, deadline - time.monotonic()),
                          max_output=OUTPUT_KEPT)
        if stopped():
            return _why_stopped(cancel, disk, out_of_time)
        if ran.timed_out:
            return TESTS_TIMED_OUT
        return TESTS_FAILED if ran.exit_code != 0 else None

    try:
        watchdog.start()
        disk.start()
        cancel.start()
        runtime = deployment.start()
        if (problem := offline_problem(deployment.network_state())) is not None:
            return f"{TESTS_NOT_RUN}: {problem}"  # fail closed: the branch never runs online
        for number, command in enumerate(setup, 1):
            if (verdict := step(runtime, command)) is not None:
                return (f"{TESTS_NOT_RUN}: setup command {number} failed offline"
                        if verdict == TESTS_FAILED else verdict)
        for command in tests:
            if (verdict := step(runtime, command)) is not None:
                return verdict
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
