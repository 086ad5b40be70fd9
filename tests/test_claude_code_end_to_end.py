"""The claude-code agent end to end: a comment asks for `--agent claude-code`, the real service
runs the real Claude Code CLI in a real sandbox, and it reaches the loopback model API only
through the task's model proxy and the forwarder; the task ends in a pull request.

While the CLI runs (it waits for the model's next answer), the sandbox is searched for the
model API's key: its environment, every process's environment, every file under the CLI's
home, /tmp and the work tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest

from runner import agent_tools
from runner.cli_agents import AGENT_HOME, MODEL_MOUNT
from tests.conftest import REPO, WRITER, WRITER_ID
from tests.fakes.anthropic import Final, ToolCall, Turn, text_of

INSTRUCTION = "make the CLI print its version with --version"
OLD_MAIN = '''def main(argv):
    print("hello from widgets")
    return 0'''
NEW_MAIN = '''def main(argv):
    if "--version" in argv:
        print("widgets 1.0.0")
        return 0
    print("hello from widgets")
    return 0'''
ANSWER = "Add a --version flag to the CLI\n\nThe CLI now prints `widgets 1.0.0` for --version."
MODEL = "claude-sonnet-4-6"
# Everything the sandbox's user can read that could hold a key: its environment, every
# process's environment, and every file in the CLI's home, /tmp and the work tree.
SEARCH = ("env; echo; for f in /proc/[0-9]*/environ; do cat \"$f\"; echo; done; "
          "find /tmp /workspace -type f -exec cat {} + 2>/dev/null; "
          f"echo; echo FILES; find {AGENT_HOME} /workspace -type f")


class SandboxSearch:
    """Searches the task's sandbox from outside, as its user, when the fake model is asked for
    a turn: the CLI is then running, waiting for the answer."""

    def __init__(self, docker_client: docker.DockerClient, root: Path, script: str = SEARCH):
        self.docker = docker_client
        self.root = str(root)  # the test's directory: its service's work trees are under it
        self.script = script
        self.found: list[bytes] = []

    def __call__(self, tool_output: str) -> bool:
        # The sandbox of this test's CLI agent task: the one with the task's model directory
        # mounted from under the test's directory (other tests may share the engine).
        [container] = [found for found in self.docker.containers.list(
            filters={"label": "async-code.task"})
            if any(mount["Destination"] == MODEL_MOUNT and mount["Source"].startswith(self.root)
                   for mount in found.attrs["Mounts"])]
        ran = container.exec_run(["sh", "-c", self.script], user="61000:61000")
        self.found.append(ran.output)
        return True


@pytest.fixture
def claude_code_service(service_factory, agent_tools_dir, bash_sandbox_image):
    def make(**settings: str):
        return service_factory(ASYNC_CODE_AGENTS="claude,claude-code",
                               ASYNC_CODE_AGENT_TOOLS=str(agent_tools_dir),
                               ASYNC_CODE_SANDBOX_IMAGE=bash_sandbox_image,
                               ASYNC_CODE_SANDBOX_MEMORY="1g", **settings).start()
    return make


def git(repo_path, *args):
    return subprocess.run(["git", "--git-dir", str(repo_path), *args], check=True,
                          capture_output=True, text=True).stdout


def test_claude_code_turns_a_comment_into_a_pull_request_without_the_key(
        claude_code_service, github, model, docker_client, tmp_path):
    search = SandboxSearch(docker_client, tmp_path)
    model.add_script(INSTRUCTION, [
        Turn([ToolCall("Bash", {"command": "id -u && ls", "description": "Who am I, what is here"},
                       expect=lambda out: "61000" in out and "cli.py" in out)]),
        Turn([ToolCall("Read", {"file_path": "/workspace/cli.py"}, expect=search)]),
        Turn([ToolCall("Edit", {"file_path": "/workspace/cli.py", "old_string": OLD_MAIN,
                                "new_string": NEW_MAIN, "replace_all": False},
                       expect="updated successfully")]),
        Final(ANSWER),
    ])
    service = claude_code_service()
    task_id = service.comment(f"@async-code --agent claude-code {INSTRUCTION}", login=WRITER,
                              user_id=WRITER_ID)
    task = service.wait_for_task(task_id, timeout=180)
    assert task.status == "completed", (task.error, service.logs())
    assert model.failures == []

    # The pull request, with the change the CLI made and its answer as title and body.
    [pr] = github.pulls
    assert pr["title"] == "Add a --version flag to the CLI"
    assert "widgets 1.0.0" in pr["body"] and "Fixes #7" in pr["body"]
    repo_path = github.repo_path(REPO)
    branch = f"async-code/7-{task_id[:8]}"
    assert git(repo_path, "show", f"{branch}:cli.py").count('"--version" in argv') == 1
    assert git(repo_path, "diff", "--name-only", "main", branch).split() == ["cli.py"]

    # The task's record: the CLI and its pinned version, its turns, the usage the proxy counted.
    assert (task.agent, task.agent_version) == ("claude-code",
                                                f"claude-code {agent_tools.CLAUDE.version}")
    assert task.stop_reason == "answer" and task.output == ANSWER
    reported = model.total_usage()
    assert (task.input_tokens, task.output_tokens) == (reported["input_tokens"],
                                                       reported["output_tokens"])
    tools_used = [block["name"] for message in task.chat_history if message["role"] == "assistant"
                  for block in message["content"] if block.get("type") == "tool_use"]
    assert tools_used == ["Bash", "Read", "Edit"]

    # The CLI streamed its calls for the task's model, with the request and our system prompt.
    calls = [request for request in model.requests if request["path"] == "/v1/messages"]
    assert len(calls) == 4 and all(request["status"] == 200 for request in calls)
    assert {(request["json"]["model"], request["json"]["stream"]) for request in calls} == {
        (MODEL, True)}
    first = calls[0]["json"]
    assert f"{INSTRUCTION}\n" in text_of(first["messages"][0]["content"])
    assert "Someone with write access asked for a change in issue #7" in str(first["system"])
    assert first["max_tokens"] == 8192  # CLAUDE_CODE_MAX_OUTPUT_TOKENS, as the runner set it

    # Searched while the CLI ran: the CLI held the per-task token, never the key.
    [found] = search.found
    listing = found.split(b"\nFILES\n")[1].decode()
    assert f"{AGENT_HOME}/.claude.json" in listing and "/workspace/cli.py" in listing
    tokens = {line.split(b"=", 1)[1] for line in found.replace(b"\0", b"\n").splitlines()
              if line.startswith(b"ANTHROPIC_API_KEY=")}
    assert len(tokens) == 1 and len(tokens.pop()) >= 32
    assert model.api_key.encode() not in found
    assert b"127.0.0.1:" in found  # ANTHROPIC_BASE_URL: the forwarder, not the model API
    assert model.base_url.encode() not in found

    # The sandbox is gone, and so is the task's model directory with its socket.
    assert docker_client.containers.list(all=True, filters={"label": f"async-code.task={task_id}"}) == []
    assert not (service.data_dir / "workspaces" / task_id).exists()


def test_claude_code_stops_at_the_budget_and_pushes_what_it_did(claude_code_service, github, model):
    # The first call's usage is small; the second call asks for as many output tokens as the
    # whole budget, which what is left cannot pay for: the proxy refuses it.
    model.add_script(INSTRUCTION, [
        Turn([ToolCall("Write", {"file_path": "/workspace/VERSION", "content": "1.0.0\n"},
                       expect="File created successfully")],
             usage={"input_tokens": 300, "output_tokens": 40}),
        Final(ANSWER),
    ])
    service = claude_code_service(ASYNC_CODE_BUDGET_TOKENS="8000")
    task_id = service.comment(f"@async-code --agent claude-code {INSTRUCTION}", login=WRITER,
                              user_id=WRITER_ID)
    task = service.wait_for_task(task_id, timeout=180)
    assert task.status == "completed", (task.error, service.logs())
    assert task.stop_reason == "budget"
    assert (task.input_tokens, task.output_tokens) == (300, 40)
    calls = [request for request in model.requests if request["path"] == "/v1/messages"]
    assert len(calls) == 1 and calls[0]["json"]["max_tokens"] == 8000

    [pr] = github.pulls
    # What the model said was no summary: the title is the instruction's.
    assert INSTRUCTION in pr["title"] and "Add a --version flag" not in pr["title"]
    assert "async-code stopped at its budget" in pr["body"]
    assert "work in progress" in pr["body"]
    branch = f"async-code/7-{task_id[:8]}"
    assert git(github.repo_path(REPO), "show", f"{branch}:VERSION") == "1.0.0\n"
