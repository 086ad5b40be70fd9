"""The setup network's decisions: which network a sandbox starts on, when a sandbox counts as
offline, and what the runner does around setup with them. A deployment double stands in for
Docker here; test_sandbox.py has the real engine's side, test_setup_network_end_to_end.py the
whole path."""

from __future__ import annotations

import time

import pytest

from runner.execute import TaskCancelled, TaskFailed, TimedOut, _run_setup
from runner.sandbox import (CommandResult, NetworkState, SandboxError, SandboxGone,
                            offline_problem, sandbox_network)

OFFLINE = NetworkState(interfaces=("lo",), networks=())


@pytest.mark.parametrize(("setup", "configured", "network"), [
    ((), None, None),
    ((), "async-code-setup", None),  # nothing would use it
    (("make deps",), None, None),
    (("make deps",), "async-code-setup", "async-code-setup"),
])
def test_a_sandbox_starts_on_the_setup_network_only_for_setup_commands(setup, configured, network):
    assert sandbox_network(setup, configured) == network


@pytest.mark.parametrize(("state", "problem"), [
    (OFFLINE, None),
    (NetworkState(("lo",), ("none",)), None),  # created with network_mode="none"
    (NetworkState(("eth0", "lo"), ()), "the sandbox is not offline: it has the network "
                                       "interface eth0 besides `lo`"),
    (NetworkState(("eth0", "eth1", "lo"), ()), "the network interfaces eth0, eth1 besides `lo`"),
    (NetworkState(("wg0",), ()), "the network interface wg0 and no `lo`"),
    (NetworkState((), ()), "its network interfaces could not be listed"),
    (NetworkState(("lo",), ("async-code-setup",)),
     "the sandbox is not offline: the Docker engine still attaches it to the network "
     "async-code-setup"),
    (NetworkState(("eth0", "lo"), ("none", "async-code-setup")),
     "interface eth0 besides `lo`; the Docker engine still attaches it to the network "
     "async-code-setup"),
])
def test_a_sandbox_is_offline_only_with_lo_alone_and_no_network(state, problem):
    if problem is None:
        assert offline_problem(state) is None
    else:
        assert problem in offline_problem(state)


class FakeRuntime:
    def __init__(self, calls: list, exit_codes: dict[str, int]):
        self.calls, self.exit_codes = calls, exit_codes

    def run(self, command: str, *, timeout: float, max_output: int = 30_000) -> CommandResult:
        self.calls.append(("run", command))
        return CommandResult(exit_code=self.exit_codes.get(command, 0), output="it said so\n",
                             timed_out=False, truncated=False)


class FakeDeployment:
    container_id = "c0ffee"
    setup_network = "async-code-setup"

    def __init__(self, calls: list, *, disconnect_error: Exception | None = None,
                 state: NetworkState = OFFLINE):
        self.calls, self.disconnect_error, self.state = calls, disconnect_error, state

    def disconnect_setup_network(self) -> None:
        self.calls.append(("disconnect",))
        if self.disconnect_error is not None:
            raise self.disconnect_error

    def network_state(self) -> NetworkState:
        self.calls.append(("network_state",))
        return self.state


class FakeCancel:
    def __init__(self, by: str | None = None):
        self.cancelled_by = by

    def check(self) -> str | None:
        return self.cancelled_by


def run_setup(commands, *, exit_codes=None, cancel_by=None, **deployment):
    """What _run_setup asked of the sandbox, in order, and how it ended the task (None: the
    agent may start)."""
    calls: list = []
    try:
        _run_setup(tuple(commands), FakeDeployment(calls, **deployment),
                   FakeRuntime(calls, exit_codes or {}), time.monotonic() + 60, FakeCancel(cancel_by))
    except (TaskFailed, TaskCancelled) as ending:
        return calls, ending
    return calls, None


def test_setup_runs_then_the_sandbox_leaves_the_network_and_is_checked():
    assert run_setup(["npm ci", "npm run build"]) == ([
        ("run", "npm ci"), ("run", "npm run build"), ("disconnect",), ("network_state",)], None)


def test_without_setup_commands_the_sandbox_is_still_checked_before_the_agent():
    assert run_setup([]) == ([("disconnect",), ("network_state",)], None)


def test_a_failed_disconnect_fails_the_task_and_nothing_else_runs():
    refused = SandboxError("cannot disconnect sandbox container async-code-1 from the setup "
                           "network async-code-setup: no such network")
    calls, ending = run_setup(["npm ci"], disconnect_error=refused)
    assert type(ending) is TaskFailed and str(ending) == (
        "the sandbox could not be taken offline after setup (cannot disconnect sandbox container "
        "async-code-1 from the setup network async-code-setup: no such network), so the agent "
        "did not start.")
    assert calls == [("run", "npm ci"), ("disconnect",)]


def test_a_sandbox_still_online_after_setup_fails_the_task():
    _, ending = run_setup(["npm ci"], state=NetworkState(("eth0", "lo"), ("async-code-setup",)))
    assert type(ending) is TaskFailed and str(ending) == (
        "the sandbox is not offline: it has the network interface eth0 besides `lo`; the Docker "
        "engine still attaches it to the network async-code-setup, so the agent did not start.")


def test_a_failing_setup_command_ends_the_task_before_the_disconnect():
    calls, ending = run_setup(["npm ci", "npm test"], exit_codes={"npm ci": 3})
    assert type(ending) is TaskFailed and "setup command 1" in str(ending)
    assert calls == [("run", "npm ci")]


@pytest.mark.parametrize(("cancel_by", "ending_type"), [("alice", TaskCancelled), (None, TimedOut)])
def test_a_sandbox_stopped_during_the_disconnect_is_a_cancel_or_the_deadline(cancel_by, ending_type):
    calls, ending = run_setup(["npm ci"], cancel_by=cancel_by, disconnect_error=SandboxGone("stopped"))
    assert type(ending) is ending_type and calls[-1] == ("disconnect",)
