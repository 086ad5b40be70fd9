"""The codex agent end to end: a comment asks for `--agent codex`, the real service runs the real
Codex CLI in a real sandbox, and it reaches the loopback Responses API only through the task's
model proxy and the forwarder; its commands and its apply_patch tool change the work tree, and
the task ends in a pull request.

While the CLI runs (it waits for the model's next answer), the sandbox is searched for the
model API's key: its environment, every process's environment and command line, every file
under /tmp, the CLI's home and the work tree. Codex's budget stop and the runner's stop of Codex
past its turns (Codex has no turn limit) end in pull requests too."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from runner import agent_tools
from runner.cli_agents import CODEX_HOME_MOUNT
from tests.conftest import REPO, WRITER, WRITER_ID
from tests.fakes.openai import Call, CustomCall, FakeOpenAI, Final, Turn
from tests.test_claude_code_end_to_end import SandboxSearch

INSTRUCTION = "make the CLI print its version with --version"
# A model Codex knows: it offers this one apply_patch as a custom (free-text) tool.
MODEL = "gpt-5.5"
PATCH = '''*** Begin Patch
*** Update File: cli.py
@@
 def main(argv):
+    if "--version" in argv:
+        print("widgets 1.0.0")
+        return 0
     print("hello from widgets")
*** End Patch
'''
ANSWER = "Add a --version flag to the CLI\n\nThe CLI now prints `widgets 1.0.0` for --version."
SEARCH = ("env; echo; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat \"$f\"; "
          "echo; done; "
          f"find /tmp {CODEX_HOME_MOUNT} /workspace -type f -exec cat {{}} + 2>/dev/null; "
          f"echo; echo FILES; find /tmp {CODEX_HOME_MOUNT} /workspace -type f")


@pytest.fixture
def openai_model():
    with FakeOpenAI("sk-openai-test-" + secrets.token_hex(16), models=frozenset({MODEL})) as fake:
        yield fake


@pytest.fixture
def codex_service(service_factory, agent_tools_dir, bash_sandbox_image, openai_model):
    def make(**settings: str):
        return service_factory(ASYNC_CODE_AGENTS="claude,codex",
                               ASYNC_CODE_ALLOWED_MODELS=f"claude-sonnet-4-6,{MODEL}",
                               OPENAI_API_KEY=openai_model.api_key,
                               OPENAI_BASE_URL=openai_model.base_url,
                               ASYNC_CODE_AGENT_TOOLS=str(agent_tools_dir),
                               ASYNC_CODE_SANDBOX_IMAGE=bash_sandbox_image,
                               ASYNC_CODE_SANDBOX_MEMORY="1g", **settings).start()
    return make


def ask(service) -> str:
    return service.comment(f"@async-code --agent codex --model {MODEL} {INSTRUCTION}",
                           login=WRITER, user_id=WRITER_ID)


def git(repo_path, *args):
    return subprocess.run(["git", "--git-dir", str(repo_path), *args], check=True,
                          capture_output=True, text=True).stdout


def test_codex_turns_a_comment_into_a_pull_request_without_the_key(
        codex_service, github, openai_model, docker_client, tmp_path):
    search = SandboxSearch(docker_client, tmp_path, SEARCH)
    openai_model.add_script(INSTRUCTION, [
        Turn([Call("exec_command", {"cmd": "id -u && ls"},
                   expect=lambda out: "61000" in out and "cli.py" in out)]),
        Turn([Call("exec_command", {"cmd": "cat cli.py"}, expect=search)]),
        Turn([CustomCall("apply_patch", PATCH, expect="Success. Updated the following files")]),
        Final(ANSWER),
    ])
    service = codex_service()
    task_id = ask(service)
    task = service.wait_for_task(task_id, timeout=180)
    assert task.status == "completed", (task.error, service.logs())
    assert openai_model.failures == []

    # The pull request, with the change Codex's apply_patch made and its answer as title and body.
    [pr] = github.pulls
    assert pr["title"] == "Add a --version flag to the CLI"
    assert "widgets 1.0.0" in pr["body"] and "Fixes #7" in pr["body"]
    repo_path = github.repo_path(REPO)
    branch = f"async-code/7-{task_id[:8]}"
    assert git(repo_path, "show", f"{branch}:cli.py").count('"--version" in argv') == 1
    assert git(repo_path, "diff", "--name-only", "main", branch).split() == ["cli.py"]

    # The task's record: the CLI and its pinned version, its steps, the usage the proxy counted.
    assert (task.agent, task.agent_version) == ("codex", f"codex {agent_tools.CODEX.version}")
    assert task.stop_reason == "answer" and task.output == ANSWER
    reported = openai_model.total_usage()
    assert (task.input_tokens, task.output_tokens) == (reported["input_tokens"],
                                                       reported["output_tokens"])
    steps = [block for message in task.chat_history if message["role"] == "assistant"
             for block in message["content"] if block.get("type") == "tool_use"]
    assert [step["name"] for step in steps] == ["command_execution", "command_execution",
                                                "file_change"]
    assert "id -u && ls" in steps[0]["input"]["command"]
    results = [block for message in task.chat_history if message["role"] == "user"
               and isinstance(message["content"], list) for block in message["content"]]
    assert "61000" in results[0]["content"] and not results[0]["is_error"]

    # Codex streamed its calls for the task's model, stored nothing, and carried the request
    # and our system prompt (its model_instructions_file) in the conversation.
    calls = [request for request in openai_model.requests if request["path"] == "/v1/responses"]
    assert len(calls) == 4 and all(request["status"] == 200 for request in calls)
    assert {(call["json"]["model"], call["json"]["stream"], call["json"]["store"])
            for call in calls} == {(MODEL, True, False)}
    first = calls[0]["json"]["input"]
    said = {(item.get("role"), part["text"]) for item in first if item.get("type") == "message"
            for part in item["content"]}
    assert any(role == "developer" and "Someone with write access asked for a change in issue #7"
               in text for role, text in said)
    assert any(role == "user" and text.startswith(f"{INSTRUCTION}\n") for role, text in said)
    tools = {(tool["type"], tool.get("name")) for tool in calls[0]["json"]["tools"]}
    assert {("function", "exec_command"), ("custom", "apply_patch")} <= tools
    assert not any(kind.startswith("web_search") for kind, _ in tools)  # turned off

    # Searched while the CLI ran: the CLI held the per-task token, never the key.
    # (The fake checks every earlier output again on each later call: the first search is the
    # one made while the CLI waited for its third answer.)
    found = search.found[0]
    listing = found.split(b"\nFILES\n")[1].decode()
    assert f"{CODEX_HOME_MOUNT}/.codex/" in listing and "/workspace/cli.py" in listing
    tokens = {line.split(b"=", 1)[1] for line in found.replace(b"\0", b"\n").splitlines()
              if line.startswith(b"OPENAI_API_KEY=")}
    assert len(tokens) == 1 and len(tokens.pop()) >= 32
    assert openai_model.api_key.encode() not in found
    assert b'base_url="http://127.0.0.1:8765/v1"' in found  # the forwarder, not the API
    assert openai_model.base_url.encode() not in found
    # Its home is outside /tmp, so Codex put its helpers on the PATH without a warning.
    assert "could not create PATH aliases" not in service.logs()

    assert docker_client.containers.list(all=True, filters={"label": f"async-code.task={task_id}"}) == []
    assert not (service.data_dir / "workspaces" / task_id).exists()


def test_codex_stops_at_the_budget_and_pushes_what_it_did(codex_service, github, openai_model):
    # Codex names no bound on its answers, so the proxy gives each call the one the budget
    # pays for; the first call spends the whole budget, and the proxy refuses the next.
    openai_model.add_script(INSTRUCTION, [
        Turn([CustomCall("apply_patch", "*** Begin Patch\n*** Add File: VERSION\n+1.0.0\n"
                                        "*** End Patch\n", expect="Success")],
             usage={"input_tokens": 7_960, "output_tokens": 40}),
        Final(ANSWER),
    ])
    service = codex_service(ASYNC_CODE_BUDGET_TOKENS="8000")
    task_id = ask(service)
    task = service.wait_for_task(task_id, timeout=180)
    assert task.status == "completed", (task.error, service.logs())
    assert task.stop_reason == "budget"
    assert (task.input_tokens, task.output_tokens) == (7_960, 40)
    calls = [request for request in openai_model.requests if request["path"] == "/v1/responses"]
    assert len(calls) == 1 and calls[0]["json"]["max_output_tokens"] == 8000

    [pr] = github.pulls
    assert INSTRUCTION in pr["title"] and "async-code stopped at its budget" in pr["body"]
    branch = f"async-code/7-{task_id[:8]}"
    assert git(github.repo_path(REPO), "show", f"{branch}:VERSION") == "1.0.0\n"


def test_codex_is_stopped_past_its_turns_and_pushes_what_it_did(codex_service, github,
                                                                openai_model):
    # Codex has no turn limit: the runner counts its steps and stops it as the second starts
    # (it waits in `sleep`), so the model is never asked a third time.
    openai_model.add_script(INSTRUCTION, [
        Turn([Call("exec_command", {"cmd": "echo 1.0.0 > VERSION"})]),
        Turn([Call("exec_command", {"cmd": "sleep 60"})]),
        Final(ANSWER),
    ])
    service = codex_service(ASYNC_CODE_MAX_TURNS="1")
    task_id = ask(service)
    task = service.wait_for_task(task_id, timeout=180)
    assert task.status == "completed", (task.error, service.logs())
    assert task.stop_reason == "max_turns"
    calls = [request for request in openai_model.requests if request["path"] == "/v1/responses"]
    assert len(calls) == 2 and openai_model.failures == []
    assert "stopping codex past its 1 turns" in service.logs()

    [pr] = github.pulls
    assert INSTRUCTION in pr["title"]
    branch = f"async-code/7-{task_id[:8]}"
    assert git(github.repo_path(REPO), "show", f"{branch}:VERSION") == "1.0.0\n"
