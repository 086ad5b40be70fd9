"""A loopback OpenAI Responses API (POST /v1/responses) that plays scripted conversations.

As strict as the real API where a client could go wrong: the bearer key, unknown parameters,
the shape of every input item, function calls (and custom tool calls, whose input is free text,
like Codex's apply_patch) answered by their call_id with an output of their own kind, and only
tools the request declares. It answers in the API's shapes, whole or as the stream of server-sent
events the Codex CLI reads (response.created, response.output_item.added, the text and
argument deltas, response.output_item.done, response.completed with usage).

Like the Anthropic fake it keeps no per-conversation state: a script is chosen by a substring
of the conversation's user messages (the first that holds one of the scripts' substrings; Codex
sends its environment as a user message before the request), and the step by how many function
calls the input already holds.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from tests.fakes.server import LoopbackServer

__all__ = ["Call", "CustomCall", "Error", "FakeOpenAI", "Final", "Step", "Turn"]

DEFAULT_MODELS = frozenset({"gpt-5-codex", "gpt-5-mini"})
# The parameters POST /v1/responses takes; the API refuses any other.
_PARAMETERS = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "stream",
    "stream_options", "store", "max_output_tokens", "max_tool_calls", "reasoning", "text",
    "include", "metadata", "previous_response_id", "prompt_cache_key", "prompt_cache_retention",
    "safety_identifier", "service_tier", "temperature", "top_p", "top_logprobs", "truncation",
    "user", "background", "conversation", "prompt", "client_metadata",
})
# The tool types a request may declare. Only functions (alone or in a namespace) are ever
# called by the fake; the hosted tools are accepted as declarations and never run.
_HOSTED_TOOLS = frozenset({"web_search", "web_search_preview", "file_search", "code_interpreter",
                           "image_generation", "computer_use_preview", "local_shell", "mcp",
                           "tool_search"})
# Each kind of call the fake makes, with the kind of input item that answers it.
_OUTPUT_OF = {"function_call": "function_call_output",
              "custom_tool_call": "custom_tool_call_output"}
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class Call:
    """One function_call output item, plus what the client's function_call_output must say."""

    name: str
    arguments: dict[str, Any]
    expect: str | Callable[[str], bool] | None = None


@dataclass(frozen=True)
class CustomCall:
    """One custom_tool_call output item: a call of a `custom` tool, whose input is free text
    (Codex's apply_patch takes a patch this way); `expect` as Call's."""

    name: str
    input: str
    expect: str | Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Turn:
    """A response whose output calls tools (and may say something first)."""

    calls: list[Call | CustomCall]
    text: str = ""
    # input_tokens, output_tokens and cached_tokens to report; None: rough counts.
    usage: dict[str, int] | None = None


@dataclass(frozen=True)
class Final:
    """A response whose output is one assistant message."""

    text: str
    usage: dict[str, int] | None = None  # as Turn.usage


@dataclass(frozen=True)
class Error:
    """An HTTP error answered every time the step is reached."""

    status: int
    type: str
    message: str
    code: str | None = None


Step = Turn | Final | Error


@dataclass
class _Script:
    match: str
    steps: list[Step]
    issued: set[str] = field(default_factory=set)  # call_ids the fake sent


class _Rejection(Exception):
    def __init__(self, message: str, status: int = 400, code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.message, self.status, self.code, self.param = message, status, code, param


class FakeOpenAI:
    def __init__(self, api_key: str, models: frozenset[str] = DEFAULT_MODELS):
        if not api_key:
            raise ValueError("FakeOpenAI needs a non-empty api_key")
        self.api_key = api_key
        self.models = models
        self.requests: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._scripts: list[_Script] = []
        self._usage = {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0}
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._create_app(), "fake-openai")

    @property
    def base_url(self) -> str:
        """Where /v1/responses is served from; the SDK's base_url is this plus /v1."""
        return self._server.url

    def start(self) -> FakeOpenAI:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_script(self, match: str, steps: list[Step]) -> None:
        """Play `steps` in any conversation with a user message that contains `match`."""
        if not steps:
            raise ValueError("a script needs at least one step")
        for step in steps:
            if isinstance(step, Turn) and not step.calls:
                raise ValueError("a Turn needs at least one Call; use Final for a plain answer")
            if not isinstance(step, (Turn, Final, Error)):
                raise TypeError(f"{step!r} is not a Turn, Final or Error")
        with self._lock:
            self._scripts.append(_Script(match=match, steps=list(steps)))

    def total_usage(self) -> dict[str, int]:
        with self._lock:
            return dict(self._usage)

    def _create_app(self) -> Flask:
        app = Flask(__name__)

        @app.before_request
        def record_and_authenticate() -> Response | None:
            record = {
                "method": request.method,
                "path": request.path,
                "headers": {name.lower(): _REDACTED if name.lower() == "authorization" else value
                            for name, value in request.headers.items()},
                "json": request.get_json(silent=True),
                "status": None,
            }
            with self._lock:
                self.requests.append(record)
            request.environ["fake_openai.record"] = record
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(),
                                                                        self.api_key.encode()):
                return _error(401, "Incorrect API key provided.", "invalid_api_key")
            return None

        @app.after_request
        def record_status(response: Response) -> Response:
            record = request.environ.get("fake_openai.record")
            if record is not None:
                with self._lock:
                    record["status"] = response.status_code
            return response

        @app.post("/v1/responses")
        def create_response() -> Response:
            return self._create_response(request.get_json(silent=True))

        @app.errorhandler(HTTPException)
        def http_error(error: HTTPException) -> Response:
            if error.code in (404, 405):
                return _error(404, f"Invalid URL ({request.method} {request.path})")
            return _error(error.code or 400, error.description or error.name)

        @app.errorhandler(Exception)
        def crashed(error: Exception) -> Response:
            self._fail(f"the fake crashed: {error!r}")
            return _error(500, f"the fake crashed: {error!r}", kind="server_error")

        return app

    def _create_response(self, body: Any) -> Response:
        try:
            script, turn = self._locate(body)
            step = script.steps[turn]
            if isinstance(step, Error):
                return _error(step.status, step.message, step.code, kind=step.type)
            self._check_tools_declared(script, turn, step, body)
        except _Rejection as rejection:
            self._fail(rejection.message)
            return _error(rejection.status, rejection.message, rejection.code, rejection.param)

        output = self._output_for(script, step)
        usage = _usage_of(step.usage, body, output)
        with self._lock:
            for name in self._usage:
                self._usage[name] += usage["input_tokens_details"]["cached_tokens"] \
                    if name == "cached_tokens" else usage[name]
        response = _response(body, output, usage)
        if body.get("stream") is True:
            return Response(_stream(response), status=200, mimetype="text/event-stream",
                            headers={"x-request-id": "req_" + secrets.token_hex(12)})
        return _json(200, response)

    def _locate(self, body: Any) -> tuple[_Script, int]:
        """Checks the request as the API would, and finds the script and the step to play."""
        if not isinstance(body, dict):
            raise _Rejection("We could not parse the JSON body of your request.")
        unknown = sorted(set(body) - _PARAMETERS)
        if unknown:
            raise _Rejection(f"Unknown parameter: '{unknown[0]}'.", code="unknown_parameter",
                             param=unknown[0])
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _Rejection("Missing required parameter: 'model'.", param="model")
        if body["model"] not in self.models:
            raise _Rejection(f"The model `{body['model']}` does not exist or you do not have "
                             "access to it.", status=404, code="model_not_found")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise _Rejection("Invalid type for 'stream': expected a boolean.", param="stream")
        if "max_output_tokens" in body and (not isinstance(body["max_output_tokens"], int)
                                            or isinstance(body["max_output_tokens"], bool)
                                            or body["max_output_tokens"] < 16):
            raise _Rejection("Invalid 'max_output_tokens': integer below minimum value 16.",
                             param="max_output_tokens")
        if body.get("previous_response_id") is not None:
            raise _Rejection("the fake keeps no responses: send the whole conversation as input",
                             param="previous_response_id")
        items = _input_items(body.get("input"))
        _check_tools(body.get("tools"))
        said = [_text_of(item.get("content")) for item in items
                if item.get("type", "message") == "message" and item.get("role") == "user"]
        if not said:
            raise _Rejection("the input needs a user message", param="input")
        with self._lock:
            script = next((s for text in said for s in self._scripts if s.match in text), None)
        if script is None:
            raise _Rejection(f"no script matches a user message: {said[-1][:200]!r}")
        turn = self._turn_of(script, items)
        if turn >= len(script.steps):
            raise _Rejection(f"script {script.match!r} is exhausted after {len(script.steps)} steps")
        return script, turn

    def _turn_of(self, script: _Script, items: list[dict[str, Any]]) -> int:
        """The step to play: one past the steps whose calls the input holds, each answered."""
        calls = [item for item in items if item.get("type") in _OUTPUT_OF]
        outputs = {item.get("call_id"): (index, item) for index, item in enumerate(items)
                   if item.get("type") in _OUTPUT_OF.values()}
        with self._lock:
            issued = set(script.issued)
        for call in calls:
            where = f"script {script.match!r}: function_call {call.get('call_id')!r}"
            if call.get("call_id") not in issued:
                raise _Rejection(f"{where} is not one the fake sent")
            answer = outputs.get(call["call_id"])
            if answer is None or answer[0] < items.index(call) \
                    or answer[1].get("type") != _OUTPUT_OF[call["type"]]:
                kind = "custom tool call" if call["type"] == "custom_tool_call" else "function call"
                raise _Rejection(f"No tool output found for {kind} {call['call_id']}.",
                                 param="input")
        strays = set(outputs) - {call.get("call_id") for call in calls}
        if strays:
            raise _Rejection(f"No tool call found for function call output with call_id "
                             f"{sorted(strays)[0]}.", param="input")
        turn, seen = 0, 0
        while turn < len(script.steps) and isinstance(script.steps[turn], Turn) \
                and seen + len(script.steps[turn].calls) <= len(calls):
            step = script.steps[turn]
            self._check_outputs(script, turn, step, calls[seen:seen + len(step.calls)], outputs)
            seen += len(step.calls)
            turn += 1
        if seen != len(calls):
            raise _Rejection(f"script {script.match!r}: the input holds {len(calls)} function "
                             "calls, which is not where any step ends")
        return turn

    def _check_outputs(self, script: _Script, turn: int, step: Turn,
                       calls: list[dict[str, Any]], outputs: dict[Any, tuple[int, dict]]) -> None:
        problems = []
        for expected, call in zip(step.calls, calls):
            kind = "custom_tool_call" if isinstance(expected, CustomCall) else "function_call"
            if call.get("type") != kind:
                problems.append(f"{call.get('type')} {call.get('call_id')}: the fake sent a {kind}")
                continue
            if call.get("name") != expected.name:
                problems.append(f"function_call {call.get('call_id')} names {call.get('name')!r}, "
                                f"the fake sent {expected.name!r}")
                continue
            output = outputs[call["call_id"]][1].get("output")
            text = output if isinstance(output, str) else _text_of(output)
            where = f"output of {expected.name} ({call['call_id']})"
            if isinstance(expected.expect, str) and expected.expect not in text:
                problems.append(f"{where} lacks {expected.expect!r}; got {text[:200]!r}")
            elif callable(expected.expect) and not expected.expect(text):
                problems.append(f"{where} was refused by the expect check; got {text[:200]!r}")
        if problems:
            raise _Rejection(f"script {script.match!r}, turn {turn}: " + "; ".join(problems))

    def _check_tools_declared(self, script: _Script, turn: int, step: Step, body: dict) -> None:
        if not isinstance(step, Turn):
            return
        declared = {(tool.get("type"), tool.get("name")) for tool in body.get("tools") or []
                    if tool.get("type") in ("function", "custom")}
        missing = [call.name for call in step.calls
                   if ("custom" if isinstance(call, CustomCall) else "function", call.name)
                   not in declared]
        if missing:
            raise _Rejection(f"script {script.match!r}, turn {turn}: calls {missing} but the "
                             f"request declares tools {sorted(name for _, name in declared)}")

    def _output_for(self, script: _Script, step: Turn | Final) -> list[dict[str, Any]]:
        output = []
        if step.text:
            output.append({"id": "msg_" + secrets.token_hex(12), "type": "message",
                           "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": step.text,
                                        "annotations": [], "logprobs": []}]})
        for call in step.calls if isinstance(step, Turn) else []:
            call_id = "call_" + secrets.token_hex(12)
            with self._lock:
                script.issued.add(call_id)
            if isinstance(call, CustomCall):
                output.append({"id": "ctc_" + secrets.token_hex(12), "type": "custom_tool_call",
                               "status": "completed", "call_id": call_id, "name": call.name,
                               "input": call.input})
            else:
                output.append({"id": "fc_" + secrets.token_hex(12), "type": "function_call",
                               "status": "completed", "call_id": call_id, "name": call.name,
                               "arguments": json.dumps(call.arguments)})
        return output

    def _fail(self, message: str) -> None:
        with self._lock:
            self.failures.append(message)


def _input_items(value: Any) -> list[dict[str, Any]]:
    """The input as a list of items, each checked as the API checks it."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise _Rejection("Missing required parameter: 'input'.", param="input")
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise _Rejection(f"Invalid type for '{where}': expected an object.", param=where)
        kind = item.get("type", "message")
        if "id" in item and not isinstance(item["id"], str):
            raise _Rejection(f"Invalid type for '{where}.id': expected a string.",
                             param=f"{where}.id")
        if kind == "message":
            if item.get("role") not in _ROLES:
                raise _Rejection(f"Invalid value for '{where}.role'.", param=f"{where}.role")
            content = item.get("content")
            if not isinstance(content, (str, list)):
                raise _Rejection(f"Missing required parameter: '{where}.content'.",
                                 param=f"{where}.content")
            allowed = {"output_text", "refusal"} if item["role"] == "assistant" else \
                {"input_text", "input_image", "input_file"}
            for part in content if isinstance(content, list) else []:
                if not isinstance(part, dict) or part.get("type") not in allowed:
                    raise _Rejection(f"Invalid value for '{where}.content': a {item['role']} "
                                     f"message takes parts of type {sorted(allowed)}.",
                                     param=f"{where}.content")
        elif kind in _OUTPUT_OF:
            for name in ("call_id", "name", "arguments" if kind == "function_call" else "input"):
                if not isinstance(item.get(name), str):
                    raise _Rejection(f"Missing required parameter: '{where}.{name}'.",
                                     param=f"{where}.{name}")
        elif kind in _OUTPUT_OF.values():
            if not isinstance(item.get("call_id"), str) or \
                    not isinstance(item.get("output"), (str, list)):
                raise _Rejection(f"Missing required parameter: '{where}.output'.",
                                 param=f"{where}.output")
        elif kind != "reasoning":
            raise _Rejection(f"Invalid value for '{where}.type': {kind!r} is not served by the "
                             "fake.", param=f"{where}.type")
    return value


def _check_tools(tools: Any, where: str = "tools") -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _Rejection(f"Invalid type for '{where}': expected an array.", param=where)
    for index, tool in enumerate(tools):
        at = f"{where}[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _Rejection(f"Missing required parameter: '{at}.type'.", param=f"{at}.type")
        kind = tool["type"]
        if kind == "function":
            if not isinstance(tool.get("name"), str) or not isinstance(tool.get("parameters"), dict):
                raise _Rejection(f"Missing required parameter: '{at}.name' and '{at}.parameters'.",
                                 param=at)
        elif kind == "custom":
            if not isinstance(tool.get("name"), str):
                raise _Rejection(f"Missing required parameter: '{at}.name'.", param=f"{at}.name")
        elif kind == "namespace":
            # A group of functions under one name; the group holds no further groups.
            if not isinstance(tool.get("name"), str) or not isinstance(tool.get("tools"), list):
                raise _Rejection(f"Missing required parameter: '{at}.name' and '{at}.tools'.",
                                 param=at)
            if any(isinstance(inner, dict) and inner.get("type") == "namespace"
                   for inner in tool["tools"]):
                raise _Rejection(f"Invalid value for '{at}.tools': a namespace holds functions.",
                                 param=f"{at}.tools")
            _check_tools(tool["tools"], f"{at}.tools")
        elif kind not in _HOSTED_TOOLS:
            raise _Rejection(f"Invalid value for '{at}.type': {kind!r} is not a tool type.",
                             param=f"{at}.type")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def _usage_of(scripted: dict[str, int] | None, body: dict, output: list) -> dict[str, Any]:
    if scripted is None:
        scripted = {"input_tokens": max(1, len(json.dumps(body)) // 4),
                    "output_tokens": max(1, len(json.dumps(output)) // 4)}
    input_tokens, output_tokens = scripted["input_tokens"], scripted["output_tokens"]
    return {"input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": scripted.get("cached_tokens", 0)},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}


def _response(body: dict, output: list, usage: dict) -> dict[str, Any]:
    return {
        "id": "resp_" + secrets.token_hex(16), "object": "response", "created_at": int(time.time()),
        "status": "completed", "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"], "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True), "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [], "top_p": 1.0, "truncation": "disabled",
        "usage": usage, "user": None, "metadata": {},
    }


def _stream(response: dict[str, Any]) -> Iterator[bytes]:
    """The server-sent events of a response, in the order the API sends them."""
    sequence = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(sequence), **fields}
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()

    started = {**response, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            yield event("response.output_item.added", output_index=index,
                        item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield event("response.content_part.added", item_id=item["id"], output_index=index,
                        content_index=0, part=part)
            for start in range(0, len(text), 16):
                yield event("response.output_text.delta", item_id=item["id"], output_index=index,
                            content_index=0, delta=text[start:start + 16], logprobs=[])
            yield event("response.output_text.done", item_id=item["id"], output_index=index,
                        content_index=0, text=text, logprobs=[])
            yield event("response.content_part.done", item_id=item["id"], output_index=index,
                        content_index=0, part={**part, "text": text})
        elif item["type"] == "custom_tool_call":
            yield event("response.output_item.added", output_index=index,
                        item={**item, "status": "in_progress", "input": ""})
            yield event("response.custom_tool_call_input.delta", item_id=item["id"],
                        output_index=index, delta=item["input"])
            yield event("response.custom_tool_call_input.done", item_id=item["id"],
                        output_index=index, input=item["input"])
        else:
            yield event("response.output_item.added", output_index=index,
                        item={**item, "status": "in_progress", "arguments": ""})
            yield event("response.function_call_arguments.delta", item_id=item["id"],
                        output_index=index, delta=item["arguments"])
            yield event("response.function_call_arguments.done", item_id=item["id"],
                        output_index=index, arguments=item["arguments"])
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=response)


def _json(status: int, payload: dict[str, Any]) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype="application/json")
    response.headers["x-request-id"] = "req_" + secrets.token_hex(12)
    return response


def _error(status: int, message: str, code: str | None = None, param: str | None = None, *,
           kind: str = "invalid_request_error") -> Response:
    return _json(status, {"error": {"message": message, "type": kind, "param": param,
                                    "code": code}})
