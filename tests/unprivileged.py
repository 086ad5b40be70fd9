"""Running part of a test as a user who is not root, the way a service without root runs."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable

import pytest

# CI and scripts/test run as root; a developer running pytest as themselves skips these.
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing users needs root")


def run_as(uid: int, action: Callable[[], object]) -> str | None:
    """Run `action` in a child that has dropped root; returns its traceback, if any."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        os.close(read_end)
        status = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            action()
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as child_output:
        report = child_output.read().decode()
    _, status = os.waitpid(pid, 0)
    return None if status == 0 else report or f"child exited with status {status}"
