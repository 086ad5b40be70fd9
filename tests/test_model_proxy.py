"""The model proxy, driven over its Unix socket by real HTTP clients and the SDK, in front of
the loopback model APIs: who gets through, what reaches the upstream, what is counted, what
the budget stops, and what is left once the task ends."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from flask import Flask, Response, request

from app.budget import Budget, Price, Usage, cost_usd
from runner.model_proxy import (ANTHROPIC, OPENAI, ModelProxy, Refusal, TooManyValues,
                                Upstream, affordable_output, authenticated, forwarded_betas,
                                forwarded_headers, json_values, parse_body, provider_of,
                                refuse_what_reaches_past_the_api, top_level_model)
from tests.fakes.anthropic import FakeAnthropic, Final as AnthropicFinal
from tests.fakes.openai import Call, FakeOpenAI, Final, Turn
from tests.fakes.server import LoopbackServer

TOKEN = "task-token-6f1c2a9d8e7b4c3a"
ANTHROPIC_KEY = "sk-ant-real-key-0123456789abcdef"
OPENAI_KEY = "sk-openai-real-key-0123456789abcdef"
MODEL = "claude-sonnet-4-6"
SMALL_MODEL = "claude-haiku-4-5"
GPT = "gpt-5-codex"
PRICES = {MODEL: Price(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30),
          SMALL_MODEL: Price(input=1.0, output=5.0, cache_write=1.25, cache_read=0.10),
          GPT: Price(input=1.25, output=10.0, cache_write=0.0, cache_read=0.125)}
TIMEOUT = 10


class CannedUpstream:
    """A model API that answers what the test gives it and records requests as they came,
    the real key included, so tests can see exactly what the proxy forwarded."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: Callable[[dict[str, Any]], Response] = lambda body: Response("{}", 200)
        self.release = threading.Event()
        app = Flask(__name__)

        @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
        def anything(path: str) -> Response:
            body = request.get_json(silent=True)
            self.requests.append({"method": request.method, "path": request.path,
                                  "query": request.query_string.decode(),
                                  "headers": {k.lower(): v for k, v in request.headers.items()},
                                  "json": body})
            return self.reply(body)

        self._server = LoopbackServer(app, "canned-upstream")

    @property
    def base_url(self) -> str:
        return self._server.url

    def __enter__(self) -> CannedUpstream:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self._server.stop()


def sse(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


def anthropic_stream(usage: dict[str, int], texts: list[str], output_tokens: int,
                     wait: threading.Event | None = None,
                     hold: float = TIMEOUT) -> Iterator[bytes]:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
               "model": MODEL, "stop_reason": None, "stop_sequence": None,
               "usage": {**usage, "output_tokens": 1}}
    yield sse("message_start", {"message": message})
    yield sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    for text in texts:
        yield sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})
    if wait is not None:
        wait.wait(hold)
    yield sse("content_block_stop", {"index": 0})
    yield sse("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": output_tokens}})
    yield sse("message_stop", {})


def streamed(events: Iterator[bytes]) -> Response:
    return Response(events, 200, mimetype="text/event-stream")


@pytest.fixture
def socket_dir() -> Iterator[str]:
    # Short: a Unix socket's path must fit in 108 bytes.
    directory = tempfile.mkdtemp(prefix="mp-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(OPENAI_KEY) as fake:
        yield fake


@pytest.fixture
def canned() -> Iterator[CannedUpstream]:
    with CannedUpstream() as upstream:
        yield upstream


@pytest.fixture
def make_proxy(socket_dir) -> Iterator[Callable[..., ModelProxy]]:
    started: list[ModelProxy] = []

    def make(anthropic_url: str | None = None, openai_url: str | None = None,
             **options: Any) -> ModelProxy:
        upstreams = {}
        if anthropic_url:
            upstreams[ANTHROPIC] = Upstream(anthropic_url, ANTHROPIC_KEY)
        if openai_url:
            upstreams[OPENAI] = Upstream(openai_url, OPENAI_KEY)
        options.setdefault("allowed_models", (MODEL, SMALL_MODEL, GPT))
        options.setdefault("prices", PRICES)
        options.setdefault("client_timeout", 2.0)
        proxy = ModelProxy(os.path.join(socket_dir, f"model-{len(started)}.sock"), upstreams,
                           TOKEN, **options).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.close()


def http(proxy: ModelProxy, **headers: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=proxy.socket_path),
                        base_url="http://model-proxy", timeout=TIMEOUT, headers=headers)


def sdk(proxy: ModelProxy, api_key: str = TOKEN, **headers: str) -> anthropic.Anthropic:
    """The anthropic SDK, on its own HTTP client (httpx2) over the proxy's socket."""
    client = httpx2.Client(transport=httpx2.HTTPTransport(uds=proxy.socket_path), timeout=TIMEOUT)
    return anthropic.Anthropic(api_key=api_key, base_url="http://model-proxy", max_retries=0,
                               http_client=client, default_headers=headers)


def message(model: str = MODEL, max_tokens: int = 256, text: str = "hello") -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": text}]}


def raw_exchange(proxy: ModelProxy, data: bytes) -> bytes:
    """What the proxy answers to `data` sent as is, up to when it closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(TIMEOUT)
        client.connect(proxy.socket_path)
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def sse_payloads(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


# The decisions, case by case.

@pytest.mark.parametrize("headers, accepted", [
    ([("x-api-key", TOKEN)], True),
    ([("Authorization", f"Bearer {TOKEN}")], True),
    ([("authorization", f"bearer {TOKEN}")], True),
    ([("x-api-key", TOKEN), ("authorization", f"Bearer {TOKEN}")], True),
    ([], False),
    ([("x-api-key", "")], False),
    ([("x-api-key", TOKEN[:-1])], False),
    ([("authorization", TOKEN)], False),
    ([("authorization", f"Basic {TOKEN}")], False),
    ([("x-api-key", TOKEN), ("authorization", "Bearer sk-other")], False),
    ([("x-api-key", TOKEN), ("x-api-key", "sk-other")], False),
    ([("x-api-key", "tökén")], False),
], ids=["x-api-key", "bearer", "bearer-lowercase", "both", "none", "empty", "prefix",
        "no-scheme", "basic", "second-credential", "second-key", "non-ascii"])
def test_only_the_task_token_authenticates(headers, accepted):
    assert authenticated(headers, TOKEN) is accepted


def test_forwarded_headers_keep_no_client_credential():
    sent = [("X-Api-Key", TOKEN), ("Authorization", f"Bearer {TOKEN}"), ("Cookie", "a=b"),
            ("OpenAI-Organization", "org-1"), ("OpenAI-Project", "proj-1"),
            ("x-goog-api-key", "g"), ("Proxy-Authorization", "Basic x"), ("Host", "evil"),
            ("X-Forwarded-For", "1.2.3.4"), ("Connection", "close, x-drop-me"),
            ("X-Drop-Me", "1"), ("Transfer-Encoding", "chunked"), ("X-Auth-Token", "t"),
            ("anthropic-version", "2023-06-01"), ("anthropic-beta", "tools-2024"),
            ("User-Agent", "claude-cli"), ("Accept-Encoding", "gzip")]
    kept = forwarded_headers(sent, ANTHROPIC, ANTHROPIC_KEY)
    assert kept == [("anthropic-version", "2023-06-01"), ("anthropic-beta", "tools-2024"),
                    ("User-Agent", "claude-cli"), ("accept-encoding", "identity"),
                    ("x-api-key", ANTHROPIC_KEY)]
    assert forwarded_headers([("Authorization", f"Bearer {TOKEN}")], OPENAI, OPENAI_KEY)[-1] == (
        "authorization", f"Bearer {OPENAI_KEY}")


@pytest.mark.parametrize("target, outcome", [
    ("/v1/messages", (ANTHROPIC, "/v1/messages", "")),
    ("/v1/messages?beta=true", (ANTHROPIC, "/v1/messages", "beta=true")),
    ("/v1/messages/count_tokens", (ANTHROPIC, "/v1/messages/count_tokens", "")),
    ("/v1/responses", (OPENAI, "/v1/responses", "")),
    ("/v1/chat/completions", (OPENAI, "/v1/chat/completions", "")),
    ("http://evil.example/v1/messages", 400),
    ("//evil.example/v1/messages", 404),
    ("/v1/messages/../models", 404),
    ("/v1/%6dessages", 404),
    ("/v1/models", 404),
    ("/v1/messages?u=http://evil/", 400),
    ("*", 400),
], ids=["messages", "beta-query", "count-tokens", "responses", "chat", "absolute-uri",
        "scheme-relative", "dot-dot", "percent-encoded", "models", "url-in-query", "asterisk"])
def test_which_targets_are_served(target, outcome):
    if isinstance(outcome, int):
        with pytest.raises(Refusal) as refused:
            provider_of(target)
        assert refused.value.status == outcome
    else:
        assert provider_of(target) == outcome


@pytest.mark.parametrize("raw, problem", [
    (b'{"model": "a", "model": "b"}', "repeats a key"),
    (b'{"max_tokens": NaN}', "not JSON"),
    (b'[1, 2]', "JSON object"),
    (b'{"model": "a"', "not valid JSON"),
    (b'\xff\xfe', "not valid JSON"),
    (b'[' * 100_000, "not valid JSON"),
], ids=["duplicate-key", "nan", "array", "truncated", "not-utf8", "deep"])
def test_bodies_that_could_be_read_two_ways_are_refused(raw, problem):
    with pytest.raises(Refusal, match=problem):
        parse_body(raw)


def test_a_body_of_too_many_values_is_refused_unparsed():
    assert json_values(b'{"a": [1, 2, {"b": "x,y:[{"}]}') == 8
    assert json_values(b'"' + b'\\"' * 1000) == 1  # an unclosed string is scanned once
    with pytest.raises(TooManyValues) as refused:
        parse_body(b"[" + b"[]," * 300 + b"[]]", max_values=200)
    assert refused.value.status == 413
    assert parse_body(b'{"a": [' + b"1," * 150 + b'1]}', max_values=200)["a"][0] == 1


@pytest.mark.parametrize("raw, model", [
    (b'{"model": "a", "x": [[]]}', "a"),
    (b'{"x": {"model": "inner"}, "model": "outer"}', "outer"),
    (b'{"x": ["model", "y"], "\\u006dodel": "escaped"}', "escaped"),
    (b'{"model": 5}', None),
    (b'{"model": ["a"]}', None),
    (b'{"messages": []}', None),
    (b'["model", "a"]', None),
], ids=["first", "after-nested", "escaped-key", "number", "list", "none", "array"])
def test_the_model_of_a_body_too_large_to_parse(raw, model):
    assert top_level_model(raw) == model


def _tool(kind: str | None) -> dict[str, Any]:
    return {"name": "t", **({"type": kind} if kind else {}), "input_schema": {"type": "object"}}


def _image(source: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image", "source": source}]}]


@pytest.mark.parametrize("path, extra, refused", [
    ("/v1/messages", {"tools": [_tool(None), _tool("custom")]}, None),
    ("/v1/messages", {"tools": [_tool("bash_20250124"), _tool("text_editor_20250728"),
                                _tool("computer_20251124"), _tool("memory_20250818")]}, None),
    ("/v1/messages", {"tools": [_tool("web_search_20250305")]}, "tools.0"),
    ("/v1/messages", {"tools": [_tool(None), _tool("web_fetch_20250910")]}, "tools.1"),
    ("/v1/messages", {"tools": [_tool("code_execution_20250825")]}, "tools.0"),
    ("/v1/messages", {"tools": [{"type": "mcp_toolset", "mcp_server_name": "x"}]}, "tools.0"),
    ("/v1/messages", {"tools": [_tool("tool_search_tool_regex_20251119")]}, "tools.0"),
    ("/v1/messages", {"tools": [_tool("bash_code_execution_20250825")]}, "tools.0"),
    ("/v1/messages", {"tools": ["web_search"]}, "tools.0"),
    ("/v1/messages", {"tools": {"type": "custom"}}, "tools"),
    ("/v1/messages/count_tokens", {"tools": [_tool("web_search_20250305")]}, "tools.0"),
    ("/v1/messages", {"mcp_servers": [{"type": "url", "url": "https://x.example"}]},
     "mcp_servers"),
    ("/v1/messages", {"container": "container_1"}, "container"),
    ("/v1/messages", {"messages": _image({"type": "url", "url": "https://x.example/a.png"})},
     "messages"),
    ("/v1/messages", {"system": [{"type": "document", "source": {"type": "file",
                                                                 "file_id": "file_1"}}]},
     "system"),
    ("/v1/messages", {"messages": _image({"type": "base64", "media_type": "image/png",
                                          "data": "AAAA"})}, None),
    ("/v1/messages", {"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "fetch",
         "input": {"source": {"type": "url"}, "file_id": "f"}}]}]}, None),
    ("/v1/responses", {"tools": [{"type": "function", "name": "shell", "parameters": {}},
                                 {"type": "custom", "name": "apply_patch"},
                                 {"type": "local_shell"},
                                 {"type": "namespace", "name": "n",
                                  "tools": [{"type": "function", "name": "f"}]}]}, None),
    # Codex looks up its own deferred tools: a tool search it answers itself passes; one the
    # API would run does not.
    ("/v1/responses", {"tools": [{"type": "tool_search", "execution": "client",
                                  "parameters": {"type": "object"}}]}, None),
    ("/v1/responses", {"tools": [{"type": "tool_search"}]}, "tools.0"),
    ("/v1/responses", {"tools": [{"type": "tool_search", "execution": "server"}]}, "tools.0"),
    ("/v1/responses", {"background": False, "store": False}, None),
    ("/v1/responses", {"background": True}, "background"),
    ("/v1/responses", {"previous_response_id": "resp_1"}, "previous_response_id"),
    ("/v1/responses", {"conversation": "conv_1"}, "conversation"),
    ("/v1/responses", {"prompt": {"id": "pmpt_1"}}, "prompt"),
    ("/v1/responses", {"tools": [{"type": "web_search"}]}, "tools.0"),
    ("/v1/responses", {"tools": [{"type": "mcp", "server_url": "https://x.example"}]},
     "tools.0"),
    ("/v1/responses", {"tools": [{"type": "shell", "environment": {"type": "container_auto"}}]},
     "tools.0"),
    ("/v1/responses", {"tools": [{"type": "namespace", "name": "n",
                                  "tools": [{"type": "web_search"}]}]}, "tools.0"),
    ("/v1/responses", {"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://x.example/a.png"}]}]}, "input"),
    ("/v1/responses", {"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}, None),
    ("/v1/responses", {"input": [{"role": "user", "content": [
        {"type": "input_file", "file_id": "file_1"}]}]}, "input"),
    ("/v1/chat/completions", {"n": 1, "tools": [{"type": "function", "function": {}}]}, None),
    ("/v1/chat/completions", {"n": 2}, "n:"),
    ("/v1/chat/completions", {"n": True}, "n:"),
    ("/v1/chat/completions", {"web_search_options": {}}, "web_search_options"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}]}]}, "messages"),
], ids=["custom", "client-tools", "web-search", "web-fetch", "code-execution", "mcp-toolset",
        "tool-search", "made-up-client-prefix", "tool-not-object", "tools-not-list",
        "count-tokens", "mcp-servers", "container", "url-image", "file-document",
        "base64-image", "tool-call-arguments", "codex-tools", "client-tool-search",
        "api-tool-search", "server-tool-search", "background-false", "background",
        "previous-response", "conversation", "stored-prompt", "openai-web-search", "remote-mcp",
        "hosted-shell", "namespace-of-hosted", "image-url", "data-image-url", "file-id",
        "one-answer", "many-answers", "n-not-a-number", "chat-web-search", "chat-image-url"])
def test_what_would_reach_past_the_model_api_is_refused(path, extra, refused):
    body = {"model": MODEL, **extra}
    if refused is None:
        refuse_what_reaches_past_the_api(path, body)
    else:
        with pytest.raises(Refusal) as raised:
            refuse_what_reaches_past_the_api(path, body)
        assert raised.value.status == 400 and raised.value.message.startswith(refused)


def test_only_the_betas_claude_code_needs_are_passed_on():
    sent = [("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "claude-code-20250219, mcp-client-2025-04-04,effort-2025-11-24"),
            ("anthropic-beta", "web-fetch-2025-09-10"), ("user-agent", "claude-cli")]
    assert forwarded_betas(sent) == [("anthropic-version", "2023-06-01"),
                                     ("anthropic-beta", "claude-code-20250219,effort-2025-11-24"),
                                     ("user-agent", "claude-cli")]


@pytest.mark.parametrize("budget, usage, cost, price, left", [
    (Budget(), Usage(10**9), 1e6, PRICES[MODEL], None),
    (Budget(tokens=1000), Usage(400, 100), None, None, 500),
    (Budget(tokens=1000), Usage(900, 200), None, None, 0),
    (Budget(usd=1.0), Usage(1), 0.7, PRICES[MODEL], 20_000),
    (Budget(usd=1.0), Usage(1), None, PRICES[MODEL], 0),
    (Budget(usd=1.0), Usage(1), 0.5, None, 0),
    (Budget(tokens=10_000, usd=1.0), Usage(1), 0.7, PRICES[MODEL], 9_999),
], ids=["no-budget", "tokens", "tokens-spent", "usd", "unknown-cost", "unpriced", "smaller-wins"])
def test_the_output_the_rest_of_a_budget_pays_for(budget, usage, cost, price, left):
    assert affordable_output(budget, usage, cost, price) == left


# Who gets through.

@pytest.mark.parametrize("headers", [
    {}, {"x-api-key": "wrong-token-0000000000"}, {"authorization": "Bearer wrong-token-0000"},
    {"x-api-key": ANTHROPIC_KEY}, {"x-api-key": TOKEN, "authorization": "Bearer other"},
], ids=["missing", "wrong-key", "wrong-bearer", "the-real-key", "token-and-another"])
def test_a_wrong_or_missing_token_is_refused_and_nothing_is_forwarded(make_proxy, fake_anthropic,
                                                                      headers):
    proxy = make_proxy(fake_anthropic.base_url)
    with http(proxy, **headers) as client:
        response = client.post("/v1/messages", json=message(),
                               headers={"anthropic-version": "2023-06-01"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert fake_anthropic.requests == []


def test_the_sdk_gets_through_with_the_token_and_the_upstream_sees_only_the_real_key(
        make_proxy, canned):
    canned.reply = lambda body: Response(json.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 2}}), 200,
        mimetype="application/json")
    proxy = make_proxy(canned.base_url)
    leaky = {"cookie": "session=1", "openai-organization": "org-x", "x-goog-api-key": "g",
             "proxy-authorization": "Basic eA==", "x-forwarded-for": "10.0.0.1"}
    with sdk(proxy, **leaky) as client:
        reply = client.messages.create(**message())
    assert reply.content[0].text == "hi"
    [seen] = canned.requests
    assert seen["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert seen["headers"]["anthropic-version"]  # what the API needs is passed on
    assert "authorization" not in seen["headers"]
    assert not set(leaky) & set(seen["headers"])
    assert TOKEN not in json.dumps(seen)


def test_the_strict_fakes_accept_what_the_proxy_forwards(make_proxy, fake_anthropic, fake_openai):
    fake_anthropic.add_script("hello", [AnthropicFinal("hi there")])
    fake_openai.add_script("hello", [Final("hi from gpt")])
    proxy = make_proxy(fake_anthropic.base_url, fake_openai.base_url)
    with sdk(proxy) as client:
        assert client.messages.create(**message()).content[0].text == "hi there"
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        response = client.post("/v1/responses", json={"model": GPT, "input": "hello"})
    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["content"][0]["text"] == "hi from gpt"
    assert fake_anthropic.failures == [] and fake_openai.failures == []
    assert [r["status"] for r in fake_anthropic.requests + fake_openai.requests] == [200, 200]


def test_neither_the_host_header_nor_an_absolute_uri_redirects(make_proxy, canned):
    canned.reply = lambda body: Response('{"usage": {}}', 200, mimetype="application/json")
    proxy = make_proxy(canned.base_url)
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        assert client.post("/v1/messages", json=message(),
                           headers={"host": "evil.example"}).status_code == 200
    [seen] = canned.requests
    assert seen["headers"]["host"] == canned.base_url.removeprefix("http://")

    body = json.dumps(message()).encode()
    answer = raw_exchange(proxy, b"POST http://evil.example/v1/messages HTTP/1.1\r\n"
                                 b"Host: evil.example\r\nx-api-key: " + TOKEN.encode() +
                                 b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert status_of(answer) == 400
    assert len(canned.requests) == 1


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v1/messages", 405), ("PUT", "/v1/responses", 405), ("DELETE", "/v1/models", 404),
    ("POST", "/v1/models", 404), ("POST", "/v1/files", 404), ("POST", "/v1/messages/batches", 404),
    ("POST", "/v1/responses/resp_1/cancel", 404), ("POST", "/", 404),
], ids=["get-messages", "put-responses", "delete-models", "models", "files", "batches",
        "cancel", "root"])
def test_other_paths_and_methods_are_refused_without_forwarding(make_proxy, canned, method, path,
                                                                status):
    proxy = make_proxy(canned.base_url, canned.base_url)
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        response = client.request(method, path, json=message())
    assert response.status_code == status
    assert canned.requests == []


def test_a_provider_without_an_upstream_is_not_served(make_proxy, canned):
    proxy = make_proxy(anthropic_url=canned.base_url)
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        response = client.post("/v1/responses", json={"model": GPT, "input": "hi"})
    assert response.status_code == 404 and canned.requests == []


def test_only_the_task_models_are_allowed(make_proxy, canned):
    canned.reply = lambda body: Response('{"usage": {}}', 200, mimetype="application/json")
    proxy = make_proxy(canned.base_url, canned.base_url, allowed_models=(MODEL, SMALL_MODEL))
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        other = client.post("/v1/messages", json=message(model="claude-opus-4-1"))
        assert other.status_code == 403
        assert other.json()["error"]["type"] == "permission_error"
        gpt = client.post("/v1/responses", json={"model": GPT, "input": "hi"})
        assert gpt.status_code == 403 and gpt.json()["error"]["code"] == "model_not_allowed"
        twice = client.post("/v1/messages", content=b'{"model": "%s", "model": "claude-opus-4-1",'
                            b' "max_tokens": 5, "messages": []}' % MODEL.encode(),
                            headers={"content-type": "application/json"})
        assert twice.status_code == 400
        no_model = client.post("/v1/messages/count_tokens", json={"messages": []})
        assert no_model.status_code == 403
        assert canned.requests == []
        assert client.post("/v1/messages", json=message(model=SMALL_MODEL)).status_code == 200
        assert client.post("/v1/messages/count_tokens",
                           json={"model": MODEL, "messages": []}).status_code == 200
    assert [r["json"]["model"] for r in canned.requests] == [SMALL_MODEL, MODEL]


def test_a_body_over_the_cap_is_refused_unread(make_proxy, canned):
    proxy = make_proxy(canned.base_url, max_body_bytes=4096)
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        response = client.post("/v1/messages", json=message(text="x" * 5000))
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "request_too_large"
        assert client.post("/v1/messages", json=message(text="x" * 3000)).status_code == 200
    assert len(canned.requests) == 1


# What is counted.

def test_usage_of_an_anthropic_answer_is_counted(make_proxy, fake_anthropic):
    usage = {"input_tokens": 1000, "output_tokens": 200, "cache_creation_input_tokens": 3000,
             "cache_read_input_tokens": 50_000}
    fake_anthropic.add_script("count me", [AnthropicFinal("done", usage=usage)])
    proxy = make_proxy(fake_anthropic.base_url)
    with sdk(proxy) as client:
        client.messages.create(**message(text="count me"))
    assert proxy.usage == Usage(1000, 200, 3000, 50_000)
    assert proxy.cost_usd == pytest.approx(cost_usd(Usage(1000, 200, 3000, 50_000), PRICES[MODEL]))
    assert not proxy.stopped_at_budget


def test_usage_of_a_streamed_anthropic_answer_is_counted(make_proxy, canned):
    canned.reply = lambda body: streamed(anthropic_stream(
        {"input_tokens": 40, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 900},
        ["Hel", "lo"], output_tokens=12))
    proxy = make_proxy(canned.base_url)
    with sdk(proxy) as client, client.messages.stream(**message()) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hello" and final.usage.output_tokens == 12
    assert proxy.usage == Usage(40, 12, 7, 900)


def test_usage_of_openai_responses_is_counted_streamed_or_not(make_proxy, fake_openai):
    fake_openai.add_script("shell please", [
        Turn([Call("shell", {"command": ["ls"]})],
             usage={"input_tokens": 1000, "output_tokens": 50, "cached_tokens": 600}),
        Final("done", usage={"input_tokens": 1200, "output_tokens": 20, "cached_tokens": 1000}),
    ])
    shell = {"type": "function", "name": "shell", "parameters": {"type": "object"}}
    proxy = make_proxy(openai_url=fake_openai.base_url)
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        first = client.post("/v1/responses", json={"model": GPT, "input": "shell please",
                                                   "tools": [shell]})
        [call] = first.json()["output"]
        assert proxy.usage == Usage(400, 50, 0, 600)
        with client.stream("POST", "/v1/responses", json={
                "model": GPT, "tools": [shell], "stream": True,
                "input": [{"role": "user", "content": "shell please"}, call,
                          {"type": "function_call_output", "call_id": call["call_id"],
                           "output": "a.txt"}]}) as second:
            events = sse_payloads(second.read().decode())
    assert events[-1]["type"] == "response.completed"
    assert proxy.usage == Usage(400 + 200, 50 + 20, 0, 600 + 1000)
    assert proxy.cost_usd == pytest.approx(cost_usd(Usage(600, 70, 0, 1600), PRICES[GPT]))
    assert fake_openai.failures == []


def test_usage_of_chat_completions_is_counted_and_streams_are_made_to_report_it(make_proxy, canned):
    def reply(body):
        if not body.get("stream"):
            return Response(json.dumps({"id": "c1", "object": "chat.completion", "choices": [],
                                        "usage": {"prompt_tokens": 100, "completion_tokens": 9,
                                                  "prompt_tokens_details": {"cached_tokens": 40}}}),
                            200, mimetype="application/json")
        chunks = [{"choices": [{"index": 0, "delta": {"content": "hi"}}]}]
        if body.get("stream_options", {}).get("include_usage"):
            chunks.append({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 3}})
        return streamed(iter([b"data: %s\n\n" % json.dumps(c).encode() for c in chunks]
                             + [b"data: [DONE]\n\n"]))

    canned.reply = reply
    proxy = make_proxy(openai_url=canned.base_url)
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        plain = client.post("/v1/chat/completions", json={"model": GPT, "messages": []})
        assert plain.status_code == 200
        stream = client.post("/v1/chat/completions", json={"model": GPT, "messages": [],
                                                           "stream": True})
        assert stream.text.endswith("data: [DONE]\n\n")
    assert canned.requests[1]["json"]["stream_options"] == {"include_usage": True}
    assert proxy.usage == Usage(60 + 50, 9 + 3, 0, 40)


def test_a_stream_is_relayed_as_it_arrives(make_proxy, canned):
    canned.reply = lambda body: streamed(anthropic_stream({"input_tokens": 3}, ["first"], 2,
                                                          wait=canned.release))
    proxy = make_proxy(canned.base_url)
    with http(proxy, **{"x-api-key": TOKEN}) as client, \
            client.stream("POST", "/v1/messages", json={**message(), "stream": True}) as response:
        lines = response.iter_lines()
        received = []
        # The upstream holds the rest of the stream until released: the delta must come first.
        while "first" not in "".join(received):
            received.append(next(lines))
        canned.release.set()
        rest = "\n".join(lines)
    assert "message_stop" in rest


# The budget.

def test_a_call_whose_max_tokens_the_budget_cannot_pay_is_refused(make_proxy, canned):
    canned.reply = lambda body: Response('{"usage": {"input_tokens": 1, "output_tokens": 1}}', 200,
                                         mimetype="application/json")
    proxy = make_proxy(canned.base_url, budget=Budget(tokens=1000))
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        assert client.post("/v1/messages", json=message(max_tokens=900)).status_code == 200
        assert not proxy.stopped_at_budget
        refused = client.post("/v1/messages", json=message(max_tokens=999))
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_request_error"
    assert "budget" in refused.json()["error"]["message"]
    assert len(canned.requests) == 1 and proxy.stopped_at_budget


def test_a_usd_budget_prices_max_tokens_at_the_model_price(make_proxy, canned):
    canned.reply = lambda body: Response('{"usage": {}}', 200, mimetype="application/json")
    # $0.15 pays for 10,000 output tokens of the task's model and 30,000 of the small one.
    proxy = make_proxy(canned.base_url, budget=Budget(usd=0.15))
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        assert client.post("/v1/messages", json=message(max_tokens=20_000)).status_code == 400
        assert client.post("/v1/messages",
                           json=message(model=SMALL_MODEL, max_tokens=20_000)).status_code == 200
    assert [r["json"]["model"] for r in canned.requests] == [SMALL_MODEL]


def test_an_unpriced_model_on_a_usd_budget_is_refused(make_proxy, canned):
    proxy = make_proxy(canned.base_url, budget=Budget(usd=10.0), prices={})
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        assert client.post("/v1/messages", json=message()).status_code == 400
    assert canned.requests == [] and proxy.stopped_at_budget


def test_an_openai_call_without_a_cap_gets_the_cap_the_budget_pays_for(make_proxy, fake_openai):
    fake_openai.add_script("hello", [Final("hi", usage={"input_tokens": 300, "output_tokens": 5})])
    proxy = make_proxy(openai_url=fake_openai.base_url, budget=Budget(tokens=1000))
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        assert client.post("/v1/responses", json={"model": GPT, "input": "hello"}).status_code == 200
        refused = client.post("/v1/responses", json={"model": GPT, "input": "hello",
                                                     "max_output_tokens": 800})
    assert fake_openai.requests[0]["json"]["max_output_tokens"] == 1000
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert len(fake_openai.requests) == 1


def test_an_openai_call_the_budget_pays_fewer_than_16_tokens_for_is_a_budget_stop(
        make_proxy, fake_openai):
    # The Responses API refuses a max_output_tokens below 16: the proxy must not set one, and
    # the task has then reached its budget rather than failed.
    fake_openai.add_script("hello", [Final("hi", usage={"input_tokens": 985, "output_tokens": 5})])
    proxy = make_proxy(openai_url=fake_openai.base_url, budget=Budget(tokens=1000))
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        assert client.post("/v1/responses", json={"model": GPT, "input": "hello"}).status_code == 200
        refused = client.post("/v1/responses", json={"model": GPT, "input": "hello"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    assert len(fake_openai.requests) == 1 and proxy.stopped_at_budget


def test_a_stream_is_cut_once_its_input_spends_the_budget(make_proxy, canned):
    canned.reply = lambda body: streamed(anthropic_stream({"input_tokens": 5000}, ["never seen"], 3))
    proxy = make_proxy(canned.base_url, budget=Budget(tokens=1000))
    with sdk(proxy) as client, pytest.raises(anthropic.APIStatusError, match="budget"):
        with client.messages.stream(**message(max_tokens=100)) as stream:
            stream.get_final_message()
    assert proxy.stopped_at_budget
    assert proxy.usage.input_tokens == 5000


def test_a_stream_is_cut_once_its_output_reaches_the_budget(make_proxy, canned):
    texts = [f"chunk{i} " + "x" * 394 for i in range(20)]  # about 100 tokens each
    canned.reply = lambda body: streamed(anthropic_stream({"input_tokens": 100}, texts, 2000))
    proxy = make_proxy(canned.base_url, budget=Budget(tokens=2000))
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        response = client.post("/v1/messages", json={**message(max_tokens=1900), "stream": True})
    events = sse_payloads(response.text)
    relayed = [e for e in events if e["type"] == "content_block_delta"]
    assert 0 < len(relayed) < len(texts)
    assert events[-1]["type"] == "error" and "budget" in events[-1]["error"]["message"]
    assert not any(e["type"] == "message_stop" for e in events)
    assert proxy.stopped_at_budget and proxy.usage.tokens >= 2000


def test_an_openai_stream_is_cut_at_the_budget(make_proxy, fake_openai):
    fake_openai.add_script("write a lot", [Final("y" * 4000)])
    proxy = make_proxy(openai_url=fake_openai.base_url, budget=Budget(tokens=500))
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        response = client.post("/v1/responses", json={"model": GPT, "input": "write a lot",
                                                      "stream": True, "max_output_tokens": 100})
    events = sse_payloads(response.text)
    assert events[-1]["type"] == "error" and events[-1]["code"] == "insufficient_quota"
    assert not any(e["type"] == "response.completed" for e in events)
    assert proxy.stopped_at_budget
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        assert client.post("/v1/responses", json={"model": GPT, "input": "write a lot",
                                                  "max_output_tokens": 16}).status_code == 429
    assert len(fake_openai.requests) == 1


def test_the_final_usage_of_a_stream_is_relayed_even_when_it_spends_the_budget(make_proxy, canned):
    canned.reply = lambda body: streamed(anthropic_stream({"input_tokens": 500}, ["ok"], 600))
    proxy = make_proxy(canned.base_url, budget=Budget(tokens=1000))
    with sdk(proxy) as client, client.messages.stream(**message(max_tokens=500)) as stream:
        assert stream.get_final_message().content[0].text == "ok"
    assert proxy.usage == Usage(500, 600) and not proxy.stopped_at_budget
    with sdk(proxy) as client, pytest.raises(anthropic.BadRequestError):
        client.messages.create(**message(max_tokens=1))
    assert proxy.stopped_at_budget


# Secrets.

def test_the_real_key_never_reaches_the_client(make_proxy, canned):
    def echo(body):
        key = request.headers.get("x-api-key", "")
        if body.get("stream"):
            return Response(iter([sse("message_start", {"message": {"id": key, "usage": {}}})]),
                            200, mimetype="text/event-stream", headers={"x-echo": key})
        return Response(json.dumps({"echo": key, "usage": {}}), 200,
                        mimetype="application/json", headers={"x-echo": key})

    canned.reply = echo
    proxy = make_proxy(canned.base_url)
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        plain = client.post("/v1/messages", json=message())
        stream = client.post("/v1/messages", json={**message(), "stream": True})
        canned.reply = lambda body: Response(json.dumps(
            {"type": "error", "error": {"type": "authentication_error",
                                        "message": f"invalid x-api-key {ANTHROPIC_KEY}"}}), 401,
            mimetype="application/json")
        refused = client.post("/v1/messages", json=message())
    for response in (plain, stream, refused):
        everything = response.text + json.dumps(dict(response.headers))
        assert ANTHROPIC_KEY not in everything
    assert plain.json()["echo"] == "[redacted]" and plain.headers["x-echo"] == "[redacted]"
    assert '"id": "[redacted]"' in stream.text
    assert refused.status_code == 502 and "credentials" in refused.json()["error"]["message"]


def test_neither_the_key_nor_the_token_is_logged(make_proxy, fake_anthropic, caplog):
    caplog.set_level(logging.DEBUG)
    fake_anthropic.add_script("hello", [AnthropicFinal("hi")])
    proxy = make_proxy(fake_anthropic.base_url)
    with sdk(proxy) as client:
        client.messages.create(**message())
    raw_exchange(proxy, b"POST /v1/" + TOKEN.encode() + b" HTTP/1.1\r\n\r\n")
    raw_exchange(proxy, b"GET " + TOKEN.encode() + b"\r\n\r\n")
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        client.post("/v1/messages", json=message(model=TOKEN))
    proxy.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "model call anthropic /v1/messages" in logged  # the proxy did log
    assert TOKEN not in logged and ANTHROPIC_KEY not in logged


# The task's end.

def test_after_close_nothing_answers_and_the_socket_is_gone(make_proxy, canned):
    # The upstream holds the rest of its answer longer than any timeout of the test or the
    # proxy: only close() cutting the call can end it first.
    canned.reply = lambda body: streamed(anthropic_stream({"input_tokens": 3}, ["partial"], 2,
                                                          wait=canned.release, hold=6 * TIMEOUT))
    proxy = make_proxy(canned.base_url)
    client = http(proxy, **{"x-api-key": TOKEN})
    with client.stream("POST", "/v1/messages", json={**message(), "stream": True}) as response:
        lines = response.iter_lines()
        while "partial" not in next(lines):
            pass
        closing = threading.Thread(target=proxy.close)
        closing.start()
        closing.join(TIMEOUT)
        assert not closing.is_alive()
        # The stream in flight was cut: it ends, broken off, without the rest of the answer.
        with pytest.raises(httpx.RemoteProtocolError):  # not a timeout: the proxy hung up
            list(lines)
    client.close()
    assert not os.path.exists(proxy.socket_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as again:
        with pytest.raises(FileNotFoundError):
            again.connect(proxy.socket_path)
    assert len(canned.requests) == 1


def test_the_socket_file_has_the_mode_and_owner_given(make_proxy, canned, socket_dir):
    proxy = make_proxy(canned.base_url, mode=0o660, owner=(61000, os.getgid()))
    found = os.stat(proxy.socket_path)
    assert stat.S_ISSOCK(found.st_mode) and stat.S_IMODE(found.st_mode) == 0o660
    assert found.st_uid == 61000
    default = make_proxy(canned.base_url)
    assert stat.S_IMODE(os.stat(default.socket_path).st_mode) == 0o600
    assert sorted(os.listdir(socket_dir)) == ["model-0.sock", "model-1.sock"]


def test_a_proxy_refuses_to_start_without_a_real_token_or_over_a_file(socket_dir, canned):
    upstreams = {ANTHROPIC: Upstream(canned.base_url, ANTHROPIC_KEY)}
    path = os.path.join(socket_dir, "taken.sock")
    with pytest.raises(ValueError, match="token"):
        ModelProxy(path, upstreams, "short", (MODEL,))
    open(path, "w").close()
    with pytest.raises(FileExistsError):
        ModelProxy(path, upstreams, TOKEN, (MODEL,)).start()
    assert os.path.isfile(path)


# The parser, fed what a careless or hostile client sends.

MALFORMED = [
    b"\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"POST /v1/messages\r\n\r\n",
    b"POST /v1/messages HTTP/9.9\r\n\r\n",
    b"POST /v1/messages HTTP/1.1 extra\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\n" + b"x" * 70_000 + b"\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\n" + b"".join(b"h%d: v\r\n" % i for i in range(150)) + b"\r\n",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nno colon here\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nContent-Length: 2\r\nContent-Length: 40\r\n"
    b"\r\n{}",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nContent-Length: 0x10\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nContent-Length: 9\r\n\r\nnot json!",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nContent-Length: 100\r\n\r\n{\"model\"",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nContent-Length: 4\r\n\r\nnull",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nContent-Length: 99999999999999\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nx-api-key:\xff\xfe%s\r\nContent-Length: 2\r\n\r\n{}",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
    b"POST /v1/messages HTTP/1.1\r\nx-api-key: %s\r\nContent-Length: 2\r\n\r\n{}"
    b"GET /v1/models HTTP/1.1\r\n\r\n",
]


@pytest.mark.parametrize("data", MALFORMED, ids=[f"case-{i}" for i in range(len(MALFORMED))])
def test_malformed_requests_get_a_clean_refusal(make_proxy, canned, data):
    proxy = make_proxy(canned.base_url)
    answer = raw_exchange(proxy, data.replace(b"%s", TOKEN.encode()))
    # Either a 4xx answer, or (for a body shorter than its length) the connection closed
    # after the client's timeout; never a crash, a 5xx or a hang.
    if answer:
        assert 400 <= status_of(answer) < 500, answer[:200]
        assert answer.count(b"HTTP/1.") == 1  # nothing after a refusal is read as a request
    assert canned.requests == []
    with http(proxy, **{"x-api-key": TOKEN}) as client:  # and the proxy still serves
        assert client.post("/v1/messages/count_tokens",
                           json={"model": MODEL, "messages": []}).status_code == 200


def test_calls_in_flight_keep_room_for_their_largest_answers(make_proxy, canned):
    canned.reply = lambda body: (
        Response('{"input_tokens": 7}', 200, mimetype="application/json")
        if request.path.endswith("/count_tokens") else
        streamed(anthropic_stream({"input_tokens": 10}, ["first"], 20, wait=canned.release)))
    proxy = make_proxy(canned.base_url, budget=Budget(tokens=1000))
    with http(proxy, **{"x-api-key": TOKEN}) as client, \
            client.stream("POST", "/v1/messages",
                          json={**message(max_tokens=600), "stream": True}) as first:
        lines = first.iter_lines()
        while "first" not in next(lines):
            pass
        # The first call may still answer with 600 tokens: a second of 600 would pass the budget.
        with http(proxy, **{"x-api-key": TOKEN}) as other:
            assert other.post("/v1/messages", json=message(max_tokens=600)).status_code == 400
            assert other.post("/v1/messages/count_tokens",
                              json={"model": MODEL, "messages": []}).status_code == 200
        canned.release.set()
        assert any("message_stop" in line for line in lines)
    # Once it answered with 20, its reservation is gone.
    canned.reply = lambda body: Response('{"usage": {}}', 200, mimetype="application/json")
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        assert client.post("/v1/messages", json=message(max_tokens=600)).status_code == 200
    assert proxy.usage == Usage(10, 20)


def test_refused_features_reach_the_client_in_its_api_error_shape(make_proxy, canned):
    canned.reply = lambda body: Response('{"usage": {}}', 200, mimetype="application/json")
    proxy = make_proxy(canned.base_url, canned.base_url)
    with http(proxy, **{"x-api-key": TOKEN, "anthropic-beta": "mcp-client-2025-04-04"}) as client:
        tools = client.post("/v1/messages", json={**message(), "tools": [
            {"type": "web_fetch_20250910", "name": "web_fetch"}]})
        assert tools.status_code == 400
        assert tools.json()["error"]["type"] == "invalid_request_error"
        assert "runs itself" in tools.json()["error"]["message"]
        many = client.post("/v1/chat/completions", json={"model": GPT, "n": 4, "messages": []})
        assert many.status_code == 400 and many.json()["error"]["code"] == "unsupported_value"
        assert canned.requests == []
        assert client.post("/v1/messages", json=message()).status_code == 200
    [seen] = canned.requests
    assert "anthropic-beta" not in seen["headers"]


def test_a_body_of_too_many_values_names_a_wrong_model_first(make_proxy, canned):
    proxy = make_proxy(canned.base_url)
    padding = "[" + ",".join(["[]"] * 250_000) + "]"
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        for model, status in (("claude-opus-4-1", 403), (MODEL, 413)):
            body = {"metadata": {"pad": "x"}, "model": model, "max_tokens": 5, "messages": []}
            raw = json.dumps(body).replace('"x"', padding).encode()
            answer = client.post("/v1/messages", content=raw,
                                 headers={"content-type": "application/json"})
            assert answer.status_code == status
    assert canned.requests == []


def _soon(condition: Callable[[], Any]) -> bool:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_calls_in_flight_keep_room_for_their_input_until_it_is_counted(make_proxy, canned):
    reached = threading.Event()

    def reply(body):
        if body["messages"][0]["content"].startswith("first"):
            reached.wait(TIMEOUT)  # until the second call was refused
            return streamed(anthropic_stream({"input_tokens": 10}, ["first"], 5,
                                             wait=canned.release))
        return Response('{"usage": {"input_tokens": 5, "output_tokens": 5}}', 200,
                        mimetype="application/json")

    canned.reply = reply
    proxy = make_proxy(canned.base_url, budget=Budget(tokens=2000))
    text = "first " + "a" * 4000  # about 1,000 tokens of input
    streamed_back: list[str] = []

    def first_call() -> None:
        with http(proxy, **{"x-api-key": TOKEN}) as client:
            streamed_back.append(client.post("/v1/messages", json={
                **message(max_tokens=100, text=text), "stream": True}).text)

    first = threading.Thread(target=first_call)
    first.start()
    with http(proxy, **{"x-api-key": TOKEN}) as other:
        assert _soon(lambda: canned.requests)
        # The first call reached the API, which has not counted its input: the estimate holds
        # room for it, and a second call that would fit without it is refused.
        assert other.post("/v1/messages", json=message(max_tokens=950)).status_code == 400
        reached.set()
        assert _soon(lambda: proxy.usage.input_tokens == 10)
        # The API counted 10 tokens of input: the estimate no longer holds room.
        assert other.post("/v1/messages", json=message(max_tokens=950)).status_code == 200
    canned.release.set()
    first.join(TIMEOUT)
    assert "message_stop" in streamed_back[0]


def test_connections_past_the_limit_are_closed_unanswered(make_proxy, canned):
    proxy = make_proxy(canned.base_url, max_connections=1)
    count = {"model": MODEL, "messages": []}
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        # Answered on a connection the client keeps open.
        assert client.post("/v1/messages/count_tokens", json=count).status_code == 200
        body = json.dumps(count).encode()
        request_bytes = (b"POST /v1/messages/count_tokens HTTP/1.1\r\nx-api-key: %s\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (TOKEN.encode(), len(body), body))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as second:
            second.settimeout(TIMEOUT)
            second.connect(proxy.socket_path)  # accepted by the kernel, then closed unread
            try:
                second.sendall(request_bytes)
                answer = second.recv(1024)
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
            assert answer == b""
    # Its connection closed, the next is served.
    with http(proxy, **{"x-api-key": TOKEN}) as client:
        assert client.post("/v1/messages/count_tokens", json=count).status_code == 200
