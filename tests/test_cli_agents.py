"""The CLI agents' decisions without a sandbox: how Claude Code's event stream becomes progress,
a transcript and an answer; the answer bound a budget allows; the settings a CLI agent needs;
and, through the real service, a task whose agent tools do not verify failing before anything
runs."""

from __future__ import annotations

import json
import pytest

from app.budget import Budget, Price
from app.settings import Settings
from runner.agent import MAX_TOKENS
from runner.cli_agents import ClaudeCodeReader, CodexReader, _Lines, max_output_tokens
from tests.conftest import WRITER, WRITER_ID


def assistant(message_id: str, *blocks: dict, model: str = "claude-sonnet-4-6") -> dict:
    return {"type": "assistant", "message": {"id": message_id, "model": model, "role": "assistant",
                                             "content": list(blocks)}}


def tool_use(call_id: str, name: str, **arguments) -> dict:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def tool_result(call_id: str, text: str) -> dict:
    return {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call_id, "content": text}]}}


def read_all(events: list[dict]) -> tuple[ClaudeCodeReader, list[tuple[int, str]]]:
    progress: list[tuple[int, str]] = []
    reader = ClaudeCodeReader(lambda turn, tool: progress.append((turn, tool)))
    for event in events:
        reader.read(event)
    return reader, progress


def test_claude_code_events_become_turns_progress_a_transcript_and_the_answer():
    reader, progress = read_all([
        {"type": "system", "subtype": "init", "model": "claude-sonnet-4-6"},
        # One answer's blocks come as separate events with the same message id: one turn.
        assistant("msg_1", {"type": "text", "text": "Looking first."}),
        assistant("msg_1", tool_use("toolu_1", "Bash", command="ls")),
        tool_result("toolu_1", "x" * 10_000),
        assistant("msg_2", tool_use("toolu_2", "Edit", file_path="/workspace/a.py")),
        tool_result("toolu_2", "updated"),
        assistant("msg_3", {"type": "text", "text": "Fix the thing\n\nDetails."}),
        {"type": "result", "subtype": "success", "is_error": False,
         "result": "Fix the thing\n\nDetails.", "num_turns": 3},
    ])
    assert (reader.turns, reader.answer, reader.error, reader.max_turns) == (
        3, "Fix the thing\n\nDetails.", None, False)
    assert progress == [(1, "Bash"), (2, "Edit")]
    assert [message["role"] for message in reader.transcript] == [
        "assistant", "user", "assistant", "user", "assistant"]
    assert [block["type"] for block in reader.transcript[0]["content"]] == ["text", "tool_use"]
    kept = reader.transcript[1]["content"][0]["content"]
    assert len(kept) < 5_000 and "characters cut" in kept  # long tool output is clipped


def test_claude_code_api_errors_are_not_the_models_words_and_fail_the_run():
    reader, _ = read_all([
        assistant("msg_1", {"type": "text", "text": "Working on it."}),
        assistant("synthetic", {"type": "text", "text": "API Error: 400 budget"}, model="<synthetic>"),
        {"type": "result", "subtype": "success", "is_error": True, "result": "API Error: 400 budget"},
    ])
    assert (reader.turns, reader.said, reader.answer) == (1, "Working on it.", None)
    assert reader.error == "API Error: 400 budget"


def test_claude_code_stopped_at_its_turn_limit():
    reader, _ = read_all([assistant("msg_1", tool_use("toolu_1", "Bash", command="ls")),
                          {"type": "result", "subtype": "error_max_turns", "is_error": True}])
    assert reader.max_turns and reader.error is None and reader.answer is None


def test_lines_are_read_whole_across_chunks_and_garbage_is_counted_not_fatal():
    events: list[dict] = []
    lines = _Lines(events.append)
    for chunk in (b'{"type": "a"}\n{"ty', b'pe": "b"}\nnot json\n[1]\n', b'{"type": "c"}'):
        lines.add(chunk)
    lines.close()
    assert events == [{"type": "a"}, {"type": "b"}, {"type": "c"}]
    assert lines.unreadable == 1


PRICE = Price(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30)


@pytest.mark.parametrize("budget, price, expected", [
    (Budget(), None, MAX_TOKENS),
    (Budget(tokens=1_000_000), None, MAX_TOKENS),
    (Budget(tokens=5_000), None, 5_000),  # the whole budget pays for less than the default
    (Budget(usd=0.03), PRICE, 2_000),  # $0.03 at $15 per million output tokens
    (Budget(usd=5.0), None, 1),  # spending that cannot be known is never allowed
])
def test_the_answer_bound_a_cli_is_given(budget, price, expected):
    assert max_output_tokens(budget, price) == expected


def test_each_agent_names_the_key_it_lacks():
    bare = Settings()
    assert bare.missing_for_agent("codex") == ["OPENAI_API_KEY"]
    assert bare.missing_for_agent("claude-code") == ["ANTHROPIC_API_KEY"]
    keyed = Settings(openai_api_key="sk-1", anthropic_api_key="sk-2")
    assert keyed.missing_for_agent("codex") == keyed.missing_for_agent("claude-code") == []


def test_the_agent_tools_directory_and_the_openai_url_are_checked(tmp_path):
    assert Settings(data_dir=str(tmp_path)).agent_tools_path == tmp_path / "agent-tools"
    assert Settings(agent_tools=str(tmp_path / "t")).agent_tools_path == tmp_path / "t"
    problems = Settings(agent_tools="relative/tools", openai_base_url="api.openai.com").problems(
        store=False, agent=True)
    assert any(p.startswith("ASYNC_CODE_AGENT_TOOLS='relative/tools' must be an absolute path")
               for p in problems)
    assert any(p.startswith("OPENAI_BASE_URL='api.openai.com' must be an http(s) URL")
               for p in problems)


def test_a_task_fails_before_anything_runs_when_the_agent_tools_do_not_verify(
        service_factory, model, docker_client, tmp_path):
    empty = tmp_path / "no-tools"
    empty.mkdir()
    service = service_factory(ASYNC_CODE_AGENTS="claude,claude-code",
                              ASYNC_CODE_AGENT_TOOLS=str(empty)).start()
    task_id = service.comment("@async-code --agent claude-code fix it", login=WRITER,
                              user_id=WRITER_ID)
    task = service.wait_for_task(task_id)
    assert task.status == "failed"
    assert task.error.startswith("the agent claude-code cannot run: the agent tools in")
    assert f"run scripts/agent-tools --dir {empty}" in task.error
    assert "claude: not installed" in task.error and task.error.endswith("Nothing was run.")
    assert task.container_id is None and model.requests == []


def test_codex_events_become_turns_progress_a_transcript_and_the_answer():
    progress: list[tuple[int, str]] = []
    reader = CodexReader(lambda turn, tool: progress.append((turn, tool)))
    command = {"id": "item_1", "type": "command_execution", "command": "/bin/bash -lc 'id -u'"}
    for event in [
        {"type": "thread.started", "thread_id": "t1"},
        {"type": "turn.started"},
        {"type": "item.started", "item": {**command, "aggregated_output": "", "exit_code": None,
                                          "status": "in_progress"}},
        {"type": "item.completed", "item": {**command, "aggregated_output": "61000\n",
                                            "exit_code": 0, "status": "completed"}},
        {"type": "item.completed", "item": {"id": "item_2", "type": "agent_message",
                                            "text": "Add x\n\nWrote x.txt."}},
        {"type": "turn.completed", "usage": {"input_tokens": 20, "output_tokens": 6}},
    ]:
        reader.read(event)
    assert (reader.turns, reader.answer, reader.error) == (1, "Add x\n\nWrote x.txt.", None)
    assert progress == [(1, "command_execution")]
    use, result = reader.transcript[0]["content"][0], reader.transcript[1]["content"][0]
    assert (use["name"], use["input"]) == ("command_execution", {"command": "/bin/bash -lc 'id -u'"})
    assert (result["content"], result["is_error"]) == ("61000\n", False)

    failed = CodexReader(lambda turn, tool: None)
    failed.read({"type": "turn.failed", "error": {"message": "insufficient_quota"}})
    assert failed.error == "insufficient_quota" and failed.answer is None


def test_codex_gets_a_home_outside_tmp_and_no_web_search(tmp_path):
    from runner.cli_agents import CODEX_HOME_MOUNT, CLIS, CliSetup
    codex = CLIS["codex"]
    setup = CliSetup(tools_dir=tmp_path, model_dir=tmp_path, owner=(61000, 61000), upstreams={},
                     home_mount=codex.home_mount)
    [home] = [mount for mount in setup.mounts() if mount["Type"] == "tmpfs"]
    assert home["Target"] == CODEX_HOME_MOUNT and not CODEX_HOME_MOUNT.startswith("/tmp")
    environment = codex.environment(base_url="", token="t", model="m", max_output_tokens=16)
    assert environment["CODEX_HOME"].startswith(CODEX_HOME_MOUNT + "/")
    assert 'web_search="disabled"' in codex.argv(model="m", max_turns=5)
    assert not codex.limits_turns and CLIS["claude-code"].limits_turns


def test_a_cli_agents_transcript_stops_at_its_limit_and_says_so(monkeypatch):
    # Events are the sandbox's words: however many it prints, the transcript kept is bounded.
    from runner import cli_agents

    monkeypatch.setattr(cli_agents, "TRANSCRIPT_MAX_CHARS", 50_000)
    reader = cli_agents.ClaudeCodeReader(lambda turn, tool: None)
    for n in range(200):
        reader.read({"type": "assistant", "message": {"id": "same", "model": "m", "content": [
            {"type": "text", "text": f"{n} " + "y" * 1_000}]}})
        reader.read({"type": "user", "message": {"content": "z" * 1_000}})
    kept = json.dumps(reader.transcript)
    assert len(kept) < 60_000
    assert "the rest was left out" in reader.transcript[-1]["content"][0]["text"]
    assert len([m for m in reader.transcript if "left out" in json.dumps(m)]) == 1


def test_a_cli_agents_events_are_kept_clipped_however_deep_or_wide():
    from runner.agent import TRANSCRIPT_RESULT_LIMIT
    from runner.cli_agents import CodexReader, _bounded

    nested: object = "x" * 10
    for _ in range(50):
        nested = [nested]
    bounded = _bounded({"wide": list(range(10_000)), "deep": nested, "long": "w" * 100_000})
    assert len(bounded["wide"]) == 100 and "w" * TRANSCRIPT_RESULT_LIMIT not in bounded["long"]
    assert "nested too deep" in json.dumps(bounded["deep"])
    reader = CodexReader(lambda turn, tool: None)
    reader.read({"type": "item.completed", "item": {"id": "i", "type": "agent_message",
                                                   "text": "v" * 100_000}})
    assert len(json.dumps(reader.transcript)) < TRANSCRIPT_RESULT_LIMIT + 1_000
