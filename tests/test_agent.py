"""The agent loop with the real anthropic SDK against the loopback Messages API.

Commands run through a local stand-in for the sandbox runtime, so these tests are about the
loop: tool results, retries and deadlines. The Docker sandbox is covered in test_sandbox.py
and end to end.
"""

from __future__ import annotations

import subprocess
import time

import anthropic
import pytest

from app.settings import DEFAULT_MODEL
from runner.agent import AgentError, AgentTimeout, ClaudeAgent, task_request
from runner.files import FileEditor
from runner.sandbox import CommandResult
from tests.fakes.anthropic import Error, Final, Sleep, ToolCall, Turn


class LocalRuntime:
    def __init__(self, root):
        self.root = root
        self.commands: list[str] = []

    def run(self, command, *, timeout, max_output=30_000):
        self.commands.append(command)
        try:
            done = subprocess.run(["sh", "-c", command], cwd=self.root, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return CommandResult(exit_code=None, output="", timed_out=True, truncated=False)
        return CommandResult(exit_code=done.returncode, output=done.stdout + done.stderr,
                             timed_out=False, truncated=False)


@pytest.fixture
def client(model):
    sdk = anthropic.Anthropic(api_key=model.api_key, base_url=model.base_url, max_retries=0)
    yield sdk
    sdk.close()


def run(client, tmp_path, request="fix it", *, deadline=30.0, max_turns=10, progress=None):
    agent = ClaudeAgent(client, model=DEFAULT_MODEL, max_turns=max_turns)
    runtime = LocalRuntime(tmp_path)
    result = agent.run(request=request, repo="acme/widgets", number=7, runtime=runtime,
                       editor=FileEditor(tmp_path), deadline=time.monotonic() + deadline,
                       on_progress=progress or (lambda turn, tool: None))
    return result, runtime


def test_tool_results_answer_each_call_and_usage_adds_up(client, model, tmp_path):
    (tmp_path / "a.txt").write_text("alpha\n")
    model.add_script("fix it", [
        Turn([ToolCall("bash", {"command": "cat a.txt"}, expect="exit code 0\nalpha"),
              ToolCall("edit_file", {"command": "create", "path": "b.txt", "file_text": "beta\n"})]),
        Turn([ToolCall("bash", {"command": "exit 3"}, expect_error=True),
              ToolCall("edit_file", {"command": "view", "path": "../outside"}, expect_error=True)]),
        Final("Fix it\n\nDone."),
    ])
    seen = []
    result, runtime = run(client, tmp_path, progress=lambda turn, tool: seen.append((turn, tool)))
    assert model.failures == []
    assert (result.answer, result.turns, result.stop) == ("Fix it\n\nDone.", 3, "answer")
    usage = model.total_usage()
    assert (result.input_tokens, result.output_tokens) == (usage["input_tokens"], usage["output_tokens"])
    assert (tmp_path / "b.txt").read_text() == "beta\n"
    assert runtime.commands == ["cat a.txt", "exit 3"]
    assert seen == [(1, "bash"), (1, "edit_file"), (2, "bash"), (2, "edit_file")]


def test_the_turn_budget_ends_the_loop(client, model, tmp_path):
    model.add_script("fix it", [Turn([ToolCall("bash", {"command": "true"})])] * 5)
    result, _ = run(client, tmp_path, max_turns=2)
    assert (result.turns, result.stop, result.answer) == (2, "max_turns", "")


def test_transient_errors_are_retried_then_reported(client, model, tmp_path):
    model.add_script("fix it", [Error(529, "overloaded_error", "busy", retry_after_ms=1)])
    with pytest.raises(AgentError, match="HTTP 529"):
        run(client, tmp_path)
    assert len(model.requests) == 3


def test_client_errors_are_not_retried(client, model, tmp_path):
    model.add_script("fix it", [Error(400, "invalid_request_error", "prompt is too long")])
    with pytest.raises(AgentError, match="prompt is too long"):
        run(client, tmp_path)
    assert len(model.requests) == 1


def test_a_slow_model_cannot_outlast_the_deadline(client, model, tmp_path):
    model.add_script("fix it", [Sleep(5, Final("too late"))])
    started = time.monotonic()
    with pytest.raises(AgentTimeout):
        run(client, tmp_path, deadline=1.0)
    assert time.monotonic() - started < 4  # no retry of the timed-out call past the deadline


def test_a_backoff_that_would_pass_the_deadline_ends_the_task(client, model, tmp_path):
    model.add_script("fix it", [Error(500, "api_error", "down", retry_after_ms=5_000)])
    with pytest.raises(AgentTimeout):
        run(client, tmp_path, deadline=1.0)
    assert len(model.requests) == 1


def test_the_request_puts_the_instruction_first_and_clips_a_huge_issue():
    request = task_request("add --version", number=7, issue_title="CLI", issue_body="x" * 50_000)
    assert request.startswith("add --version\n")
    assert 'issue #7, "CLI"' in request and len(request) < 25_000


def test_a_dropped_connection_is_retried(tmp_path):
    """The first connection is closed without an answer; the retry gets a final message."""
    import json
    import socket
    import threading

    answer = json.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "Answered on the second try."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4}}).encode()
    listener = socket.create_server(("127.0.0.1", 0))
    connections = []

    def serve():
        for attempt in range(2):
            conn, _ = listener.accept()
            connections.append(attempt)
            with conn:
                conn.recv(65536)  # the request head and body: small enough for one read
                if attempt == 0:
                    continue  # close without answering
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: " + str(len(answer)).encode()
                             + b"\r\n\r\n" + answer)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    port = listener.getsockname()[1]
    sdk = anthropic.Anthropic(api_key="sk-test", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    try:
        result, _ = run(sdk, tmp_path)
    finally:
        sdk.close()
        server.join(5)
        listener.close()
    assert result.answer == "Answered on the second try." and connections == [0, 1]
