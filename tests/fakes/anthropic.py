"""A loopback Anthropic Messages API that plays scripted conversations.

The runner talks to it through the real anthropic SDK, so the whole HTTP path
(auth header, request body, response parsing, retries) is exercised. A script
is chosen by a substring of the conversation's first user message and the step
to play by how many assistant turns the request already holds, so the fake keeps
no per-conversation state and SDK retries replay the same step.

Prompt caching is modelled per script: a request's prefix up to each `cache_control`
breakpoint is written to the script's cache, and a later request of the same script that
repeats a cached prefix reads it. Without scripted usage, the response reports the tokens
read, written and left over as the API does.

A request with `"stream": true` gets the same message as server-sent events, in the order the
API sends them: message_start (the input usage, one output token), then each content block as
content_block_start, its deltas (text_delta, or input_json_delta for a tool call's input) and
content_block_stop, then message_delta (stop reason and the output usage) and message_stop.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from anthropic._data import DEPRECATED_MODELS
from anthropic.types import Model
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from tests.fakes.server import LoopbackServer

__all__ = [
    "MAX_CACHE_BREAKPOINTS",
    "Error",
    "FakeAnthropic",
    "Final",
    "Sleep",
    "Step",
    "ToolCall",
    "Turn",
    "text_of",
]

# The model ids the API serves: those the installed SDK knows, less those it lists as retiring.
# A default that retires then fails the tests instead of failing in production.
CURRENT_MODELS = frozenset(get_args(get_args(Model)[0])) - DEPRECATED_MODELS.keys()

# Credential values are redacted in the records, so tests can search them for
# leaked secrets without tripping over the API key itself.
_CREDENTIAL_HEADERS = {"x-api-key", "authorization"}
_REDACTED = "[redacted]"

MAX_CACHE_BREAKPOINTS = 4
# How far back from a breakpoint the API looks for an earlier cache entry, in blocks.
CACHE_LOOKBACK_BLOCKS = 20


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix the API caches; shorter ones are billed as plain input, silently."""
    return 4096 if model.startswith("claude-haiku") else 1024


@dataclass(frozen=True)
class ToolCall:
    """One tool_use block, plus what the runner's tool_result must look like."""

    name: str
    input: dict[str, Any]
    expect: str | Callable[[str], bool] | None = None
    expect_error: bool | None = None


@dataclass(frozen=True)
class Turn:
    """An assistant message that calls tools (stop_reason "tool_use")."""

    calls: list[ToolCall]
    text: str = ""
    # The usage the response reports, e.g. with cache_creation_input_tokens and
    # cache_read_input_tokens; None: rough counts of the request and the reply.
    usage: dict[str, int] | None = None


@dataclass(frozen=True)
class Final:
    """An assistant message that ends the conversation (stop_reason "end_turn")."""

    text: str
    usage: dict[str, int] | None = None  # as Turn.usage


@dataclass(frozen=True)
class Error:
    """An HTTP error answered every time the step is reached, retries included."""

    status: int
    type: str
    message: str
    # Sent as `retry-after-ms`, which the SDK obeys instead of its 0.5 s+ backoff.
    retry_after_ms: int | None = None


@dataclass(frozen=True)
class Sleep:
    """Waits before playing `then`, like a slow model."""

    seconds: float
    then: Step


Step = Turn | Final | Error | Sleep


@dataclass
class _Script:
    match: str
    steps: list[Step]
    # Normalized assistant contents sent for each step; a list because a
    # retried request gets fresh tool_use ids.
    sent: dict[int, list[list[tuple]]] = field(default_factory=dict)
    # Digests of the prefixes written to the prompt cache by this script's requests.
    cached: set[str] = field(default_factory=set)


class _Rejection(Exception):
    """A request the real API would refuse, or one that breaks the script."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


class FakeAnthropic:
    def __init__(self, api_key: str):
        if not api_key:
            raise ValueError("FakeAnthropic needs a non-empty api_key")
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._scripts: list[_Script] = []
        self._input_tokens = 0
        self._output_tokens = 0
        self._cache_write_tokens = 0
        self._cache_read_tokens = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._app = self._create_app()
        self._server = LoopbackServer(self._app, "fake-anthropic")

    @property
    def base_url(self) -> str:
        return self._server.url

    def start(self) -> FakeAnthropic:
        self._stopping.clear()
        self._server.start()
        return self

    def stop(self) -> None:
        if not self._server.running:
            return
        self._stopping.set()  # wakes Sleep steps in progress
        self._server.stop()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_script(self, match: str, steps: list[Step]) -> None:
        """Play `steps` in any conversation whose first user message contains `match`.

        Scripts are tried in the order they were added; the first match wins.
        """
        if not steps:
            raise ValueError("a script needs at least one step")
        for step in steps:
            _check_step(step)
        with self._lock:
            self._scripts.append(_Script(match=match, steps=list(steps)))

    def total_usage(self) -> dict[str, int]:
        with self._lock:
            return {"input_tokens": self._input_tokens, "output_tokens": self._output_tokens,
                    "cache_creation_input_tokens": self._cache_write_tokens,
                    "cache_read_input_tokens": self._cache_read_tokens}

    def _create_app(self) -> Flask:
        app = Flask(__name__)

        @app.before_request
        def record_and_authenticate() -> Response | None:
            record = {
                "method": request.method,
                "path": request.path,
                "headers": {
                    name.lower(): _REDACTED if name.lower() in _CREDENTIAL_HEADERS else value
                    for name, value in request.headers.items()
                },
                "json": request.get_json(silent=True),
                "status": None,
            }
            with self._lock:
                self.requests.append(record)
            request.environ["fake_anthropic.record"] = record
            if not self._authenticated():
                return _error_response(401, "authentication_error", "invalid x-api-key")
            return None

        @app.after_request
        def record_status(response: Response) -> Response:
            record = request.environ.get("fake_anthropic.record")
            if record is not None:
                with self._lock:
                    record["status"] = response.status_code
            return response

        @app.post("/v1/messages")
        def create_message() -> Response:
            return self._create_message(request.get_json(silent=True))

        @app.errorhandler(HTTPException)
        def http_error(error: HTTPException) -> Response:
            if error.code in (404, 405):
                return _error_response(404, "not_found_error", f"{request.method} {request.path} is not served by the fake")
            return _error_response(error.code or 400, "invalid_request_error", error.description or error.name)

        @app.errorhandler(Exception)
        def crashed(error: Exception) -> Response:
            self._fail(f"the fake crashed: {error!r}")
            return _error_response(500, "api_error", f"the fake crashed: {error!r}")

        return app

    def _authenticated(self) -> bool:
        # The SDK sends an api_key as x-api-key or, in newer releases, as a bearer token.
        expected = self.api_key.encode()
        api_key = request.headers.get("x-api-key", "").encode()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        bearer = token.encode() if scheme.lower() == "bearer" else b""
        return secrets.compare_digest(api_key, expected) or secrets.compare_digest(bearer, expected)

    def _create_message(self, body: Any) -> Response:
        try:
            script, turn = self._locate(body)
            self._check_history(script, body["messages"])
            if turn > 0:
                self._check_tool_results(script, turn, body["messages"])
            step = script.steps[turn]
            while isinstance(step, Sleep):
                # Stop() interrupts the wait so shutting down never hangs on a slow step.
                self._stopping.wait(step.seconds)
                step = step.then
            if isinstance(step, Error):
                return _error_response(step.status, step.type, step.message, retry_after_ms=step.retry_after_ms)
            self._check_tools_declared(script, turn, step, body)
        except _Rejection as rejection:
            # Recorded as well as answered, because a runner may swallow a 400.
            self._fail(rejection.message)
            return _error_response(rejection.status, rejection.kind, rejection.message)

        content = _content_for(step)
        stop_reason = "tool_use" if isinstance(step, Turn) else "end_turn"
        with self._lock:
            prompt, written = _prompt_usage(body, script.cached)
            script.cached |= written
        usage = dict(step.usage) if step.usage is not None else {
            **prompt, "output_tokens": _rough_tokens(content)}
        with self._lock:
            script.sent.setdefault(turn, []).append(_normalize(content))
            self._input_tokens += usage.get("input_tokens", 0)
            self._output_tokens += usage.get("output_tokens", 0)
            self._cache_write_tokens += usage.get("cache_creation_input_tokens") or 0
            self._cache_read_tokens += usage.get("cache_read_input_tokens") or 0
        message = {
            "id": "msg_" + secrets.token_hex(12),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if body.get("stream"):
            return _stream_response(message)
        return _json_response(200, message)

    def _locate(self, body: Any) -> tuple[_Script, int]:
        """Validates the request as the API would and finds the script and step to play."""
        if not isinstance(body, dict):
            raise _Rejection("the request body must be a JSON object")
        if not request.headers.get("anthropic-version"):
            raise _Rejection("anthropic-version: header is required")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise _Rejection("stream: Input should be a valid boolean")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _Rejection("model: field required")
        if body["model"] not in CURRENT_MODELS:
            raise _Rejection(f"model: {body['model']}", status=404, kind="not_found_error")
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            raise _Rejection("max_tokens: a positive integer is required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _Rejection("messages: at least one message is required")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise _Rejection(f"messages.{index}: role must be 'user' or 'assistant'")
            if index > 0 and message["role"] == messages[index - 1]["role"]:
                raise _Rejection(f"messages.{index}: roles must alternate between 'user' and 'assistant'")
        if messages[0]["role"] != "user":
            raise _Rejection("messages.0: the first message must use the 'user' role")
        if messages[-1]["role"] != "user":
            raise _Rejection(f"messages.{len(messages) - 1}: the last message must use the 'user' role")
        _check_cache_control(body)

        instruction = text_of(messages[0].get("content"))
        with self._lock:
            script = next((script for script in self._scripts if script.match in instruction), None)
        if script is None:
            raise _Rejection(f"no script matches the first user message: {_preview(instruction)}")
        turn = sum(1 for message in messages if message["role"] == "assistant")
        if turn >= len(script.steps):
            raise _Rejection(
                f"script {script.match!r} is exhausted: it has {len(script.steps)} steps "
                f"and the request already holds {turn} assistant turns"
            )
        return script, turn

    def _check_history(self, script: _Script, messages: list[dict]) -> None:
        """Every assistant turn must be one the fake sent, in the order it was sent."""
        assistant_turn = 0
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            with self._lock:
                sent = list(script.sent.get(assistant_turn, []))
            if _normalize(message.get("content")) not in sent:
                raise _Rejection(
                    f"script {script.match!r}, messages.{index}: assistant turn {assistant_turn} "
                    f"is not what the fake sent: {_preview(json.dumps(message.get('content')))}"
                )
            assistant_turn += 1

        # The API itself requires each tool_use to be answered right after it.
        for index, message in enumerate(messages[:-1]):
            if message["role"] != "assistant":
                continue
            tool_use_ids = [block["id"] for block in _blocks(message.get("content")) if block.get("type") == "tool_use"]
            if tool_use_ids:
                self._check_answers(script, index + 1, tool_use_ids, messages[index + 1])

    def _check_answers(self, script: _Script, index: int, tool_use_ids: list[str], reply: dict) -> None:
        blocks = _blocks(reply.get("content"))
        result_ids = [block.get("tool_use_id") for block in blocks if block.get("type") == "tool_result"]
        if result_ids != tool_use_ids:
            raise _Rejection(
                f"script {script.match!r}, messages.{index}: tool_result ids {result_ids} "
                f"do not answer the tool_use ids {tool_use_ids} of the previous assistant turn"
            )
        leading_types = [block.get("type") for block in blocks[: len(result_ids)]]
        if any(block_type != "tool_result" for block_type in leading_types):
            raise _Rejection(f"script {script.match!r}, messages.{index}: tool_result blocks must come first")

    def _check_tool_results(self, script: _Script, turn: int, messages: list[dict]) -> None:
        previous = script.steps[turn - 1]
        while isinstance(previous, Sleep):
            previous = previous.then
        if not isinstance(previous, Turn):
            return
        assistant = messages[-2]
        tool_uses = [block for block in _blocks(assistant.get("content")) if block.get("type") == "tool_use"]
        results = {
            block.get("tool_use_id"): block
            for block in _blocks(messages[-1].get("content"))
            if block.get("type") == "tool_result"
        }
        problems = []
        for call, tool_use in zip(previous.calls, tool_uses):
            result = results[tool_use["id"]]
            text = text_of(result.get("content"))
            where = f"tool_result for {call.name} ({tool_use['id']})"
            if isinstance(call.expect, str) and call.expect not in text:
                problems.append(f"{where} lacks {call.expect!r}; got {_preview(text)}")
            elif callable(call.expect):
                try:
                    accepted = call.expect(text)
                except Exception as error:
                    accepted = False
                    problems.append(f"{where}: the expect check raised {error!r}")
                else:
                    if not accepted:
                        problems.append(f"{where} was refused by the expect check; got {_preview(text)}")
            if call.expect_error is not None and bool(result.get("is_error", False)) != call.expect_error:
                problems.append(
                    f"{where} has is_error={bool(result.get('is_error', False))}, expected {call.expect_error}"
                )
        if problems:
            raise _Rejection(f"script {script.match!r}, turn {turn}: " + "; ".join(problems))

    def _check_tools_declared(self, script: _Script, turn: int, step: Step, body: dict) -> None:
        # A real model can only call tools the request offers.
        if not isinstance(step, Turn):
            return
        declared = {tool.get("name") for tool in body.get("tools") or [] if isinstance(tool, dict)}
        missing = [call.name for call in step.calls if call.name not in declared]
        if missing:
            raise _Rejection(
                f"script {script.match!r}, turn {turn}: calls {missing} but the request declares tools {sorted(declared)}"
            )

    def _fail(self, message: str) -> None:
        with self._lock:
            self.failures.append(message)


def _check_step(step: Any) -> None:
    if isinstance(step, Sleep):
        _check_step(step.then)
    elif isinstance(step, Turn):
        if not step.calls:
            raise ValueError("a Turn needs at least one ToolCall; use Final for a plain answer")
        for call in step.calls:
            if not isinstance(call, ToolCall):
                raise TypeError(f"Turn.calls holds {call!r}, not a ToolCall")
    elif not isinstance(step, (Final, Error)):
        raise TypeError(f"{step!r} is not a Turn, Final, Error or Sleep")


def _marked_blocks(body: dict) -> list[tuple[str, dict[str, Any]]]:
    """Every block of the request that may carry cache_control, with its path in the request."""
    found: list[tuple[str, dict[str, Any]]] = []
    for index, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict):
            found.append((f"tools.{index}", tool))
    system = body.get("system")
    if isinstance(system, list):
        found += [(f"system.{index}", block) for index, block in enumerate(system) if isinstance(block, dict)]
    for index, message in enumerate(body["messages"]):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for position, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            path = f"messages.{index}.content.{position}"
            found.append((path, block))
            if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                found += [(f"{path}.content.{inner}", nested) for inner, nested in enumerate(block["content"])
                          if isinstance(nested, dict)]
    return [(path, block) for path, block in found if "cache_control" in block]


def _check_cache_control(body: dict) -> None:
    """Refuses breakpoints as the API does: too many, of an unknown type, on an empty text."""
    if "cache_control" in body:
        # Automatic caching (a top-level breakpoint the API places itself) is not modelled.
        raise _Rejection("cache_control: the fake serves only breakpoints on blocks, not automatic caching")
    marked = _marked_blocks(body)
    for path, block in marked:
        control = block["cache_control"]
        if not isinstance(control, dict):
            raise _Rejection(f"{path}.cache_control: Input should be a valid dictionary")
        if control.get("type") != "ephemeral":
            raise _Rejection(
                f"{path}.cache_control.type: Input tag {control.get('type')!r} found using 'type' does not "
                "match any of the expected tags: 'ephemeral'"
            )
        unknown = sorted(set(control) - {"type", "ttl"})
        if unknown:
            raise _Rejection(f"{path}.cache_control.{unknown[0]}: Extra inputs are not permitted")
        if control.get("ttl", "5m") != "5m":
            # The API also offers "1h", billed at another rate; the fake models only the default.
            raise _Rejection(f"{path}.cache_control.ttl: the fake serves only the 5-minute cache")
        if block.get("type") == "text" and block.get("text") == "":
            raise _Rejection(f"{path}.text: cache_control cannot be set for empty text blocks")
    if len(marked) > MAX_CACHE_BREAKPOINTS:
        raise _Rejection(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {len(marked)}."
        )


def _prompt_blocks(body: dict) -> list[tuple[Any, bool]]:
    """The prompt in the order the API caches it (tools, system, messages), block by block,
    each without its cache_control and with whether it ends at a breakpoint. A string
    counts as one text block, as the API reads it."""
    blocks: list[tuple[Any, bool]] = []

    def add(where: str, block: Any) -> None:
        if not isinstance(block, dict):
            blocks.append(((where, block), False))
            return
        marked = "cache_control" in block
        plain = {key: value for key, value in block.items() if key != "cache_control"}
        if isinstance(plain.get("content"), list):  # a tool_result may mark a block inside it
            marked = marked or any(isinstance(inner, dict) and "cache_control" in inner for inner in plain["content"])
            plain["content"] = [
                {key: value for key, value in inner.items() if key != "cache_control"} if isinstance(inner, dict) else inner
                for inner in plain["content"]
            ]
        blocks.append(((where, plain), marked))

    for tool in body.get("tools") or []:
        add("tool", tool)
    system = body.get("system")
    for block in _blocks(system) if system else []:
        add("system", block)
    for message in body["messages"]:
        content = message.get("content")
        for block in _blocks(content) if isinstance(content, (str, list)) else [content]:
            add(message["role"], block)
    return blocks


def _prompt_usage(body: dict, cached: set[str]) -> tuple[dict[str, Any], set[str]]:
    """The prompt's usage given what `cached` holds, and the prefixes this request writes.

    The prompt is read from the cache up to the longest cached prefix found at a breakpoint or
    within CACHE_LOOKBACK_BLOCKS before one, written from there to the last breakpoint whose
    prefix is long enough and new, and the rest is plain input. Entries never expire here.
    """
    digest = hashlib.sha256(body["model"].encode())
    prefixes: list[tuple[str, int]] = []  # (digest, tokens) of the prompt up to each block
    breakpoints: list[int] = []
    tokens = 0
    for position, (block, marked) in enumerate(_prompt_blocks(body)):
        digest.update(json.dumps(block, sort_keys=True).encode())
        tokens += len(json.dumps(block, sort_keys=True)) // 4
        prefixes.append((digest.copy().hexdigest(), tokens))
        if marked:
            breakpoints.append(position)
    read = 0
    for position in breakpoints:
        for earlier in range(position, max(-1, position - CACHE_LOOKBACK_BLOCKS - 1), -1):
            if prefixes[earlier][0] in cached:
                read = max(read, prefixes[earlier][1])
                break
    minimum = min_cacheable_tokens(body["model"])
    new = [prefixes[position] for position in breakpoints
           if prefixes[position][1] >= minimum and prefixes[position][0] not in cached]
    written = max([0] + [length - read for _, length in new])
    total = max(1, tokens)
    usage = {
        "input_tokens": total - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0},
    }
    return usage, {key for key, _ in new}


def _content_for(step: Turn | Final) -> list[dict[str, Any]]:
    if isinstance(step, Final):
        return [{"type": "text", "text": step.text}]
    content: list[dict[str, Any]] = []
    if step.text:
        content.append({"type": "text", "text": step.text})
    for call in step.calls:
        content.append(
            {"type": "tool_use", "id": "toolu_" + secrets.token_hex(12), "name": call.name, "input": call.input}
        )
    return content


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def text_of(content: Any) -> str:
    """The text of message or tool_result content, which may be a string or a list of blocks."""
    return "\n".join(block.get("text", "") for block in _blocks(content) if block.get("type") == "text")


def _normalize(content: Any) -> list[tuple]:
    """Reduces assistant content to what the model said, ignoring fields the SDK adds when echoing it."""
    normalized = []
    for block in _blocks(content):
        if block.get("type") == "text":
            normalized.append(("text", block.get("text")))
        elif block.get("type") == "tool_use":
            normalized.append(
                ("tool_use", block.get("id"), block.get("name"), json.dumps(block.get("input"), sort_keys=True))
            )
        else:
            normalized.append((block.get("type"), json.dumps(block, sort_keys=True)))
    return normalized


def _rough_tokens(value: Any) -> int:
    return max(1, len(json.dumps(value, sort_keys=True)) // 4)


def _preview(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _json_response(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype="application/json")
    response.headers["request-id"] = "req_" + secrets.token_hex(12)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _sse(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


# How a block's text or a tool call's input is cut into deltas: small enough that a client
# must put several together.
DELTA_CHARS = 16


def _pieces(text: str) -> list[str]:
    return [text[start:start + DELTA_CHARS] for start in range(0, len(text), DELTA_CHARS)] or [""]


def _stream_events(message: dict[str, Any]) -> list[bytes]:
    usage = message["usage"]
    started = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {**usage, "output_tokens": 1}}
    events = [_sse("message_start", {"message": started}), _sse("ping", {})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(_sse("content_block_start", {"index": index,
                                                       "content_block": {"type": "text", "text": ""}}))
            events += [_sse("content_block_delta", {"index": index, "delta": {
                "type": "text_delta", "text": piece}}) for piece in _pieces(block["text"])]
        else:
            events.append(_sse("content_block_start", {"index": index, "content_block": {
                **block, "input": {}}}))
            events += [_sse("content_block_delta", {"index": index, "delta": {
                "type": "input_json_delta", "partial_json": piece}})
                for piece in _pieces(json.dumps(block["input"]))]
        events.append(_sse("content_block_stop", {"index": index}))
    events.append(_sse("message_delta", {
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {key: value for key, value in usage.items() if key != "cache_creation"}}))
    events.append(_sse("message_stop", {}))
    return events


def _stream_response(message: dict[str, Any]) -> Response:
    response = Response(_stream_events(message), status=200, mimetype="text/event-stream")
    response.headers["request-id"] = "req_" + secrets.token_hex(12)
    response.headers["cache-control"] = "no-cache"
    return response


def _error_response(status: int, error_type: str, message: str, *, retry_after_ms: int | None = None) -> Response:
    payload = {"type": "error", "error": {"type": error_type, "message": message}}
    headers = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
    return _json_response(status, payload, headers)
