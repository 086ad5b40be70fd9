"""ASYNC_CODE_SETUP_NETWORK end to end: a repository's setup commands reach a busybox httpd on
an --internal network the test creates itself (`isolated_network`), and the agent's first command
does not; a missing network, a failed disconnect and an unset setting, each as a user sees it.
Nothing leaves the machine: the network is fenced off from the host and the outside."""

from __future__ import annotations

import secrets

from runner.sandbox import TASK_LABEL
from tests.conftest import wait_until
from tests.fakes.anthropic import ToolCall, Turn
from tests.test_end_to_end import INSTRUCTION, golden_script
from tests.test_repo_config_end_to_end import with_config
from tests.test_requests_end_to_end import bot_comments


def secrets_of(service, github) -> list[str]:
    """Every secret the runner holds: the App's key (line by line), the webhook secret, the
    model key and the installation tokens minted so far."""
    key_lines = [line for line in service.env["GITHUB_PRIVATE_KEY"].splitlines()
                 if line and not line.startswith("-----")]
    return [*key_lines, service.env["GITHUB_WEBHOOK_SECRET"], service.env["ANTHROPIC_API_KEY"],
            *github.minted_tokens]


def sandbox_network_mode(docker_client, task_id: str) -> str:
    [sandbox] = docker_client.api.containers(filters={"label": f"{TASK_LABEL}={task_id}"})
    return docker_client.api.inspect_container(sandbox["Id"])["HostConfig"]["NetworkMode"]


def test_setup_reaches_the_setup_network_and_the_agent_does_not(service_factory, github, model,
                                                                isolated_network):
    service = service_factory(ASYNC_CODE_SETUP_NETWORK=isolated_network.name).start()
    with_config(github, "setup:\n"
                        f"  - wget -qO /tmp/fetched {isolated_network.url_by_name}\n"
                        "  - env > /tmp/setup-env\n")

    def holds_no_secret(output: str) -> bool:
        # The setup commands' environment, then the container's own (that of its PID 1).
        return ("HOME=/tmp" in output and output.count("HOME=/tmp") == 2
                and not any(secret in output for secret in secrets_of(service, github)))

    model.add_script(INSTRUCTION, [
        # The agent's first command: the httpd setup just reached is out of reach by address.
        Turn([ToolCall("bash", {"command": f"wget -qO- {isolated_network.url_by_ip}"},
                       expect_error=True,
                       expect=lambda out: "Network is unreachable" in out
                       and isolated_network.page not in out)]),
        Turn([ToolCall("bash", {"command": "ls -A /sys/class/net; cat /tmp/fetched"},
                       expect=lambda out: out.split() == ["exit", "code", "0", "lo",
                                                          *isolated_network.page.split()])]),
        Turn([ToolCall("bash", {"command": "cat /tmp/setup-env; tr '\\0' '\\n' < /proc/1/environ"},
                       expect=holds_no_secret)]),
        *golden_script()])

    task = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))

    assert task.status == "completed", (task.error, service.logs())
    assert model.failures == []
    [pr] = github.pulls
    assert pr["head"] == task.branch


def test_a_setup_network_that_does_not_exist_fails_the_task_naming_the_setting(service_factory,
                                                                               github, model):
    missing = "async-code-test-missing-" + secrets.token_hex(4)
    service = service_factory(ASYNC_CODE_SETUP_NETWORK=missing).start()
    with_config(github, "setup: echo never\n")

    task = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))

    assert task.status == "failed" and model.requests == []
    assert task.error.startswith(f"ASYNC_CODE_SETUP_NETWORK names the Docker network '{missing}', "
                                 "which does not exist"), task.error
    assert task.error in bot_comments(github, 7)[-1]["body"]


def test_a_disconnect_that_fails_fails_the_task_before_the_agent(service_factory, github, model,
                                                                 isolated_network, docker_client):
    service = service_factory(ASYNC_CODE_SETUP_NETWORK=isolated_network.name).start()
    # Setup waits (30 s at most) for the test to take its network away and remove it, so that
    # the runner's own disconnect finds no network.
    with_config(github, "setup:\n  - |\n"
                        "    i=0; while [ -e /sys/class/net/eth0 ] && [ $i -lt 300 ]; do\n"
                        "      sleep 0.1; i=$((i + 1)); done\n")
    task_id = service.comment(f"@async-code {INSTRUCTION}")
    network = docker_client.networks.get(isolated_network.name)
    wait_until(lambda: docker_client.api.containers(filters={
        "label": f"{TASK_LABEL}={task_id}", "network": network.id}), 60, "the task's sandbox on "
        "the setup network", service.logs)
    network.reload()
    for container in network.containers:  # the sandbox and the httpd
        network.disconnect(container, force=True)
    network.remove()

    task = service.wait_for_task(task_id)

    assert task.status == "failed" and model.requests == []
    assert task.error.startswith("the sandbox could not be taken offline after setup (cannot "
                                 "disconnect sandbox container"), task.error
    assert f"from the setup network {isolated_network.name}" in task.error
    assert task.error.endswith("so the agent did not start.")
    assert "could not be taken offline after setup" in bot_comments(github, 7)[-1]["body"]


def test_without_the_setting_setup_runs_offline(service, github, model, isolated_network):
    with_config(github, "setup: wget -qO- "
                        f"{isolated_network.url_by_ip} > /tmp/fetched 2>&1; ls -A /sys/class/net\n")
    model.add_script(INSTRUCTION, [
        Turn([ToolCall("bash", {"command": "cat /tmp/fetched"},
                       expect=lambda out: "Network is unreachable" in out
                       and isolated_network.page not in out)]),
        *golden_script()])

    task = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))

    assert task.status == "completed", (task.error, service.logs())
    assert model.failures == []


def test_without_setup_commands_the_sandbox_never_joins_the_setup_network(
        service_factory, github, model, isolated_network, docker_client):
    service = service_factory(ASYNC_CODE_SETUP_NETWORK=isolated_network.name).start()
    task_ids: list[str] = []
    model.add_script(INSTRUCTION, [
        Turn([ToolCall("bash", {"command": "ls -A /sys/class/net"},
                       expect=lambda out: out.split() == ["exit", "code", "0", "lo"]
                       and sandbox_network_mode(docker_client, task_ids[0]) == "none")]),
        *golden_script()])

    task_ids.append(service.comment(f"@async-code {INSTRUCTION}"))
    task = service.wait_for_task(task_ids[0])

    assert task.status == "completed", (task.error, service.logs())
    assert model.failures == []
