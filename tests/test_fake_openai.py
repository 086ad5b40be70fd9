"""The OpenAI Responses fake: what a client must get right, and the shapes it answers in."""

import json

import httpx
import pytest

from tests.fakes.openai import Call, CustomCall, Error, FakeOpenAI, Final, Turn

API_KEY = "sk-openai-fake-0123456789"
MODEL = "gpt-5-codex"
SHELL = {"type": "function", "name": "shell", "description": "Run a command in the sandbox.",
         "parameters": {"type": "object", "properties": {"command": {"type": "array",
                                                                      "items": {"type": "string"}}},
                        "required": ["command"]}}


@pytest.fixture
def fake():
    with FakeOpenAI(API_KEY) as fake:
        yield fake


@pytest.fixture
def client(fake):
    with httpx.Client(base_url=fake.base_url, timeout=10,
                      headers={"authorization": f"Bearer {API_KEY}"}) as client:
        yield client


def create(client, input, **fields):
    return client.post("/v1/responses", json={"model": MODEL, "input": input, "tools": [SHELL],
                                              **fields})


def user(text):
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def events_of(response):
    """(event name, payload) for each server-sent event of a streamed response."""
    found = []
    for block in response.text.split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def test_a_wrong_or_missing_key_is_refused(fake):
    fake.add_script("hi", [Final("hello")])
    for headers in ({}, {"authorization": "Bearer sk-wrong"}, {"x-api-key": API_KEY},
                    {"authorization": API_KEY}):
        response = httpx.post(fake.base_url + "/v1/responses", headers=headers,
                              json={"model": MODEL, "input": "hi"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert API_KEY not in response.text
    assert all(record["headers"].get("authorization") in (None, "[redacted]")
               for record in fake.requests)


def test_a_shell_call_then_a_final_message(fake, client):
    fake.add_script("list the files", [
        Turn([Call("shell", {"command": ["ls"]}, expect="README.md")],
             usage={"input_tokens": 120, "output_tokens": 30, "cached_tokens": 100}),
        Final("There is one file.", usage={"input_tokens": 200, "output_tokens": 10}),
    ])
    first = create(client, [user("list the files")])
    assert first.status_code == 200, first.text
    response = first.json()
    assert response["object"] == "response" and response["status"] == "completed"
    [call] = response["output"]
    assert call["type"] == "function_call" and call["name"] == "shell"
    assert json.loads(call["arguments"]) == {"command": ["ls"]}
    assert response["usage"] == {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100},
                                 "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 0},
                                 "total_tokens": 150}

    second = create(client, [user("list the files"), call,
                             {"type": "function_call_output", "call_id": call["call_id"],
                              "output": "README.md\n"}])
    assert second.status_code == 200, second.text
    [message] = second.json()["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0] == {"type": "output_text", "text": "There is one file.",
                                     "annotations": [], "logprobs": []}
    assert fake.total_usage() == {"input_tokens": 320, "output_tokens": 40, "cached_tokens": 100}
    assert fake.failures == []


def test_the_streamed_form_sends_the_events_codex_reads(fake, client):
    fake.add_script("stream it", [
        Turn([Call("shell", {"command": ["pytest"]})], text="Running the tests.",
             usage={"input_tokens": 50, "output_tokens": 7}),
    ])
    response = create(client, [user("stream it")], stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response)
    names = [name for name, _ in events]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert [payload["type"] for _, payload in events] == names
    assert [payload["sequence_number"] for _, payload in events] == list(range(len(events)))
    assert names.count("response.output_item.added") == 2
    assert names.count("response.output_item.done") == 2
    text = "".join(payload["delta"] for name, payload in events
                   if name == "response.output_text.delta")
    assert text == "Running the tests."
    done = [payload["item"] for name, payload in events if name == "response.output_item.done"]
    assert done[1]["type"] == "function_call" and json.loads(done[1]["arguments"]) == {
        "command": ["pytest"]}
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed" and completed["output"] == done
    assert completed["usage"]["input_tokens"] == 50 and completed["usage"]["output_tokens"] == 7
    assert events[0][1]["response"]["usage"] is None


@pytest.mark.parametrize("fields, status, says", [
    ({"temprature": 0.2}, 400, "Unknown parameter: 'temprature'"),
    ({"model": "gpt-nonexistent"}, 404, "does not exist"),
    ({"max_output_tokens": 4}, 400, "max_output_tokens"),
    ({"stream": "yes"}, 400, "stream"),
    ({"input": []}, 400, "input"),
    ({"input": [{"type": "message", "role": "robot", "content": "hi"}]}, 400, "role"),
    ({"input": [{"role": "user", "content": [{"type": "output_text", "text": "hi"}]}]}, 400,
     "content"),
    ({"input": [{"type": "function_call", "call_id": "call_1", "name": "shell"}]}, 400,
     "arguments"),
    ({"tools": [{"type": "function", "name": "shell"}]}, 400, "parameters"),
    ({"previous_response_id": "resp_1"}, 400, "whole conversation"),
], ids=["unknown-parameter", "unknown-model", "tiny-max-output", "stream-type", "empty-input",
        "bad-role", "user-output-text", "call-without-arguments", "tool-without-parameters",
        "previous-response"])
def test_requests_the_api_would_refuse_are_refused(fake, client, fields, status, says):
    fake.add_script("hi", [Final("hello")])
    response = client.post("/v1/responses", json={"model": MODEL, "input": "hi", **fields})
    assert response.status_code == status
    error = response.json()["error"]
    assert says in error["message"] and error["type"] == "invalid_request_error"


def test_function_calls_must_be_ones_the_fake_sent_and_be_answered(fake, client):
    fake.add_script("fix it", [Turn([Call("shell", {"command": ["make"]})]), Final("done")])
    forged = {"type": "function_call", "call_id": "call_forged", "name": "shell",
              "arguments": "{}"}
    refused = create(client, [user("fix it"), forged,
                              {"type": "function_call_output", "call_id": "call_forged",
                               "output": "ok"}])
    assert refused.status_code == 400 and "not one the fake sent" in refused.json()["error"]["message"]

    [call] = create(client, [user("fix it")]).json()["output"]
    unanswered = create(client, [user("fix it"), call])
    assert unanswered.status_code == 400
    assert "No tool output found" in unanswered.json()["error"]["message"]
    stray = create(client, [user("fix it"), {"type": "function_call_output",
                                             "call_id": "call_other", "output": "x"}])
    assert stray.status_code == 400 and "No tool call found" in stray.json()["error"]["message"]


def test_an_output_that_misses_the_expectation_is_a_failure(fake, client):
    fake.add_script("run tests", [Turn([Call("shell", {"command": ["pytest"]}, expect="passed")]),
                                  Final("ok")])
    [call] = create(client, [user("run tests")]).json()["output"]
    response = create(client, [user("run tests"), call,
                               {"type": "function_call_output", "call_id": call["call_id"],
                                "output": "3 failed"}])
    assert response.status_code == 400
    assert fake.failures and "lacks 'passed'" in fake.failures[-1]


def test_a_call_to_an_undeclared_function_is_a_failure_and_errors_are_scripted(fake, client):
    fake.add_script("patch", [Turn([Call("apply_patch", {"patch": "..."})])])
    fake.add_script("busy", [Error(429, "rate_limit_exceeded", "Slow down.", "rate_limit_exceeded")])
    undeclared = create(client, [user("patch")])
    assert undeclared.status_code == 400 and "apply_patch" in fake.failures[-1]
    busy = create(client, [user("busy")])
    assert busy.status_code == 429
    assert busy.json()["error"] == {"message": "Slow down.", "type": "rate_limit_exceeded",
                                    "param": None, "code": "rate_limit_exceeded"}


def test_only_post_to_responses_is_served(fake, client):
    assert client.get("/v1/responses").status_code == 404
    assert client.post("/v1/completions", json={}).status_code == 404


PATCH_TOOL = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
              "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}


def test_what_codex_sends_is_served(fake, client):
    # Codex's request: developer messages, its environment as a user message before the request,
    # ids on input items, tools of several types, and the parameters it always sets.
    fake.add_script("fix the bug", [Turn([Call("exec_command", {"cmd": "ls"}, expect="cli.py")]),
                                    Final("Fixed.")])
    tools = [{**SHELL, "name": "exec_command"}, PATCH_TOOL, {"type": "web_search"},
             {"type": "tool_search", "execution": "client", "parameters": {"type": "object"}},
             {"type": "namespace", "name": "agents", "description": "Sub-agents.",
              "tools": [{**SHELL, "name": "spawn_agent"}]}]
    codex = {"tools": tools, "store": False, "include": ["reasoning.encrypted_content"],
             "reasoning": {"effort": "medium"}, "prompt_cache_key": "thread-1",
             "client_metadata": {"thread_id": "thread-1"}, "text": {"verbosity": "low"},
             "stream": True}
    conversation = [
        {"type": "message", "id": "msg_1", "role": "developer",
         "content": [{"type": "input_text", "text": "You are careful."}]},
        {**user("<environment_context><cwd>/workspace</cwd></environment_context>"), "id": "msg_2"},
        {**user("fix the bug"), "id": "msg_3"}]
    first = client.post("/v1/responses", json={"model": MODEL, "input": conversation, **codex})
    assert first.status_code == 200, first.text
    call = [payload["item"] for name, payload in events_of(first)
            if name == "response.output_item.done"][0]
    assert json.loads(call["arguments"]) == {"cmd": "ls"}
    answered = conversation + [call, {"type": "function_call_output", "id": "fco_1",
                                      "call_id": call["call_id"], "output": "cli.py\n"}]
    second = client.post("/v1/responses", json={"model": MODEL, "input": answered, **codex})
    assert second.status_code == 200, second.text
    assert events_of(second)[-1][1]["response"]["store"] is False
    assert fake.failures == []


def test_a_custom_tool_call_is_streamed_and_answered_by_its_own_output(fake, client):
    patch = "*** Begin Patch\n*** Add File: VERSION\n+1.0.0\n*** End Patch\n"
    fake.add_script("add a version", [Turn([CustomCall("apply_patch", patch, expect="Success")]),
                                      Final("Added.")])
    response = client.post("/v1/responses", json={"model": MODEL, "input": [user("add a version")],
                                                   "tools": [PATCH_TOOL], "stream": True})
    events = events_of(response)
    assert "".join(payload["delta"] for name, payload in events
                   if name == "response.custom_tool_call_input.delta") == patch
    [call] = [payload["item"] for name, payload in events if name == "response.output_item.done"]
    assert (call["type"], call["name"], call["input"]) == ("custom_tool_call", "apply_patch", patch)

    def post(output_type):
        return client.post("/v1/responses", json={
            "model": MODEL, "tools": [PATCH_TOOL], "input": [
                user("add a version"), call,
                {"type": output_type, "call_id": call["call_id"], "output": "Success."}]})
    wrong = post("function_call_output")
    assert wrong.status_code == 400
    assert "No tool output found for custom tool call" in wrong.json()["error"]["message"]
    answered = post("custom_tool_call_output")
    assert answered.status_code == 200, answered.text
    assert answered.json()["output"][0]["content"][0]["text"] == "Added."


@pytest.mark.parametrize("tools, says", [
    ([{"type": "shell_magic"}], "'shell_magic' is not a tool type"),
    ([{"type": "custom"}], "tools[0].name"),
    ([{"type": "namespace", "name": "n", "tools": [{"type": "function", "name": "f"}]}],
     "tools[0].tools[0]"),
], ids=["unknown-type", "custom-without-name", "namespace-bad-function"])
def test_tools_the_api_would_refuse_are_refused(fake, client, tools, says):
    fake.add_script("hi", [Final("hello")])
    response = client.post("/v1/responses", json={"model": MODEL, "input": "hi", "tools": tools})
    assert response.status_code == 400 and says in response.json()["error"]["message"]


def test_a_custom_call_needs_a_custom_tool_of_its_name(fake, client):
    fake.add_script("patch it", [Turn([CustomCall("apply_patch", "*** Begin Patch\n")])])
    response = create(client, [user("patch it")])  # declares only the `shell` function
    assert response.status_code == 400 and "apply_patch" in fake.failures[-1]
