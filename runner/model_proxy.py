"""A task's model proxy: the only way a CLI agent in the sandbox reaches a model API.

The sandbox has no network and holds no credential. For each task the runner serves this proxy
on a Unix socket in the task's directory, bind-mounted into the sandbox, and gives the CLI a
random per-task token as its API key. The proxy:

- answers only requests that carry that token, and forwards nothing for the others;
- sends each allowed request to one fixed upstream per provider, with the real key in place of
  every credential the client sent, whatever the client says about hosts or URLs;
- serves only the model calls a CLI makes (POST to four paths) for the task's models, and
  refuses what would make the model API act beyond answering: server-side tools, MCP servers,
  URL sources, background runs, stored responses, several answers at once;
- counts the usage the API reports, streamed or not, refuses a call the task's budget cannot
  cover, and cuts a stream once the budget is spent;
- stops answering, and cuts what is in flight, when the task ends.

The budget is checked three ways. Before a call: its largest answer (max_tokens, or OpenAI's
max_output_tokens) at the model's price, with what the calls still in flight reserved (their
largest answers, and their input estimated from their body's size, about four bytes a token,
until the API counts it), must fit in what is left; a call that names no bound gets the one
the budget pays for. During a
stream: the usage the API reports (Anthropic's message_start gives the input at once) plus an
estimate of the output relayed so far, about four characters a token, until the final count
arrives; once that spends the budget the stream ends with the API's error event. A call's own
input is not known before the API counts it, so it is checked only from then on.

It runs on the standard library's HTTP server: the clients it serves (the SDKs, Claude Code,
Codex) send a JSON body with a Content-Length, so the server needs no more of HTTP than that,
and everything else (chunked request bodies, absolute URIs, other methods) is refused.
Upstream calls go through httpx, which streams a response as it arrives.
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import json
import logging
import math
import os
import re
import socket
import socketserver
import stat
import threading
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from app.budget import (Budget, BudgetState, Price, Usage, budget_state, cost_usd,
                        openai_usage_of, usage_of)

log = logging.getLogger(__name__)

ANTHROPIC, OPENAI = "anthropic", "openai"
# The only requests served: the paths a CLI's model calls use, each with its provider.
PATHS = {
    "/v1/messages": ANTHROPIC,
    "/v1/messages/count_tokens": ANTHROPIC,
    "/v1/responses": OPENAI,
    "/v1/chat/completions": OPENAI,
}
UNBILLED_PATHS = frozenset({"/v1/messages/count_tokens"})
# Claude Code asks for /v1/messages?beta=true; a query of plain words is passed on as it is.
_QUERY = re.compile(r"[A-Za-z0-9_.=&-]{0,200}")

MAX_BODY_BYTES = 32 * 1024**2  # far above a full context window of text
MAX_RESPONSE_BYTES = 64 * 1024**2  # what the proxy holds of a response that is not streamed
MAX_EVENT_BYTES = 16 * 1024**2  # one server-sent event, e.g. a completed response with its output
CLIENT_TIMEOUT = 60.0  # seconds a client may take to send a request or read what it is sent
UPSTREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=10.0)
MAX_CONNECTIONS = 32
REDACTED = b"[redacted]"
CHARS_PER_TOKEN = 4  # how a stream's output, and a call's input, are estimated until counted
# What one body may hold, counted before it is parsed: each value, key and element becomes a
# Python object of 50 to 100 bytes or more, so 3 bytes of `[],` would otherwise cost 72, and a
# full body many times its size. Claude Code's conversations hold about one value in 200 bytes:
# at that rate the cap is above what MAX_BODY_BYTES lets through, and it bounds what parsing
# one body adds to about 20 MB besides the text itself.
MAX_JSON_VALUES = 200_000

# The anthropic-beta values passed on: what Claude Code sends for tool use, thinking, effort and
# context management (its `claude-code-` marker included), and token counting. Any other value
# is dropped, so no beta (an MCP client, a server tool, the Files API) is enabled through it.
ANTHROPIC_BETAS = frozenset({
    "claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27",
    "thinking-token-count-2026-05-13", "advanced-tool-use-2025-11-20", "effort-2025-11-24",
    "thinking-display-updates-2026-08-18", "token-counting-2024-11-01",
})
# Tools the caller runs itself: Anthropic's custom tools (no type, or "custom") and its client
# tools; OpenAI's functions, custom (free-form) tools, Codex's local shell, a tool search the
# caller answers itself ("execution": "client": Codex looks up its own deferred tools), and
# namespaces of these. Every other type is a server tool, run by the API: web search and fetch,
# code execution, MCP connectors, hosted shells, a tool search the API runs; none is forwarded.
_ANTHROPIC_CLIENT_TOOL = re.compile(r"(bash|text_editor|computer|memory)_[0-9]{8}")
_OPENAI_CLIENT_TOOLS = frozenset({"function", "custom", "local_shell"})
# Request fields that make the API reach out, run on after the call, or read stored state: an
# MCP server or a code container (Anthropic); a background run, a stored response,
# conversation or prompt (Responses); a web search (Chat Completions).
_REFUSED_FIELDS = {
    "/v1/messages": ("mcp_servers", "container"),
    "/v1/messages/count_tokens": ("mcp_servers", "container"),
    "/v1/responses": ("background", "previous_response_id", "conversation", "prompt"),
    "/v1/chat/completions": ("web_search_options",),
}

# Request headers that carry a credential, or that say where or how to connect rather than
# what to ask: none reaches the upstream. Any header whose name ends in "-api-key",
# "-token" or "-secret", or holds "auth" or "cookie", is dropped as well.
_DROPPED_REQUEST_HEADERS = frozenset({
    "x-api-key", "api-key", "authorization", "openai-organization", "openai-project",
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
    "upgrade", "expect", "accept-encoding", "forwarded", "via", "x-real-ip",
})
_CREDENTIAL_NAME = re.compile(r".*(-api-key|-token|-secret|auth.*|cookie.*)|proxy-.*|x-forwarded-.*")
# Response headers that describe the upstream connection, not the answer.
_DROPPED_RESPONSE_HEADERS = frozenset({
    "content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive",
    "set-cookie", "set-cookie2", "trailer", "upgrade", "alt-svc", "server", "via", "date",
})
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                          403: "permission_error", 404: "not_found_error",
                          405: "not_found_error", 411: "invalid_request_error",
                          413: "request_too_large", 429: "rate_limit_error"}


@dataclass(frozen=True)
class Upstream:
    """Where one provider's calls go: `base_url` is what the API paths (/v1/...) are appended
    to, like https://api.anthropic.com or https://api.openai.com."""

    base_url: str
    api_key: str = field(repr=False)


class Refusal(Exception):
    """A request the proxy answers itself, in the provider's error shape; nothing is forwarded."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


# The decisions, without I/O.

def provider_of(target: str) -> tuple[str, str, str]:
    """The provider, path and query of a request target; Refusal unless it is one of PATHS."""
    if not target.startswith("/"):
        # An absolute URI asks a forward proxy to pick the host: this proxy has one host a provider.
        raise Refusal(400, "send the request to a path, like POST /v1/messages; this proxy "
                           "forwards only to its own upstream")
    path, _, query = target.partition("?")
    if path not in PATHS:
        raise Refusal(404, f"{path[:100]!r} is not served: the model proxy serves POST "
                           f"{', '.join(PATHS)}")
    if not _QUERY.fullmatch(query):
        raise Refusal(400, "the query string may hold only letters, digits and _.=&-")
    return PATHS[path], path, query


def presented_credentials(headers: list[tuple[str, str]]) -> list[str | None]:
    """Every key the client presents: each x-api-key, and each Authorization's bearer token.
    An Authorization of another scheme is presented as None, which never matches."""
    found: list[str | None] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "x-api-key":
            found.append(value.strip())
        elif lowered == "authorization":
            scheme, _, token = value.strip().partition(" ")
            found.append(token.strip() if scheme.lower() == "bearer" else None)
    return found


def authenticated(headers: list[tuple[str, str]], token: str) -> bool:
    """At least one key presented, and every one is the task's token (compared in constant
    time), so a client cannot slip a second credential past the proxy."""
    presented = presented_credentials(headers)
    expected = token.encode()
    # Every comparison runs, so the time taken does not say which one failed.
    matches = [value is not None and hmac.compare_digest(value.encode("utf-8", "replace"),
                                                         expected)
               for value in presented]
    return bool(matches) and all(matches)


def forwarded_headers(headers: list[tuple[str, str]], provider: str,
                      api_key: str) -> list[tuple[str, str]]:
    """The client's headers without its credentials, its connection headers and any header its
    Connection header names, plus the real key in the provider's header."""
    named_by_connection = {
        token.strip().lower() for name, value in headers if name.lower() == "connection"
        for token in value.split(",")}
    kept = [(name, value) for name, value in headers
            if (lowered := name.lower()) not in _DROPPED_REQUEST_HEADERS
            and lowered not in named_by_connection and not _CREDENTIAL_NAME.fullmatch(lowered)]
    kept.append(("accept-encoding", "identity"))  # the proxy reads the usage in the response
    if provider == ANTHROPIC:
        kept.append(("x-api-key", api_key))
    else:
        kept.append(("authorization", f"Bearer {api_key}"))
    return kept


def relayed_headers(headers: list[tuple[str, str]], api_key: str) -> list[tuple[str, str]]:
    secret = api_key.encode()
    return [(name, _redact(value.encode("latin-1", "replace"), secret).decode("latin-1"))
            for name, value in headers if name.lower() not in _DROPPED_RESPONSE_HEADERS]


# A JSON string, always matched from its opening quote (to the end of the body when it is
# unclosed), so the scan is linear whatever the body; and the structural characters.
_JSON_STRING = rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)'
_STRING = re.compile(_JSON_STRING, re.DOTALL)
_TOKEN = re.compile(_JSON_STRING + rb"|[][{}:,]", re.DOTALL)


class TooManyValues(Refusal):
    def __init__(self, limit: int):
        super().__init__(413, f"the body holds more than {limit:,} JSON values; send less at once")


def json_values(raw: bytes) -> int:
    """About how many values, keys and elements a JSON text holds: its commas, colons and
    opening brackets outside strings, plus one. Counted in C, holding at most one copy of the
    body with its strings emptied."""
    structure = _STRING.sub(b'""', raw)
    return sum(structure.count(char) for char in (b",", b":", b"[", b"{")) + 1


def top_level_model(raw: bytes) -> str | None:
    """The first top-level "model" of a JSON object, read without parsing the rest; None when
    it has none, or it is not a string."""
    depth, key, previous = 0, None, None
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if depth == 1:
            if key == "model":
                return _json_string(token)
            key = _json_string(previous) if token == b":" and previous else None
            previous = token
        if token in (b"{", b"["):
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
    return None


def _json_string(token: bytes) -> str | None:
    if not token.startswith(b'"'):
        return None
    try:
        value = json.loads(token)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def parse_body(raw: bytes, max_values: int = MAX_JSON_VALUES) -> dict[str, Any]:
    """The request's JSON object. Duplicate keys and NaN are refused: the upstream's parser
    might read them differently from this one, and see a model this one did not check. A body
    of more than `max_values` values is refused unparsed (TooManyValues): parsed, it would
    hold many times its size in the runner's memory."""
    if json_values(raw) > max_values:
        raise TooManyValues(max_values)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise Refusal(400, "the JSON body repeats a key")
        return dict(pairs)

    def no_constant(name: str) -> None:
        raise Refusal(400, f"the JSON body holds {name}, which is not JSON")

    try:
        body = json.loads(raw, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Refusal(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Refusal(400, "the body must be a JSON object")
    return body


def refuse_what_reaches_past_the_api(path: str, body: dict[str, Any]) -> None:
    """Refusal for a request that would make the model API do more than answer from what it is
    sent: run a server tool (search or fetch the web, run code, connect to an MCP server), fetch
    a URL or read a stored file, run on in the background, read a stored response or
    conversation, or give several answers at the price of one. Each of these reaches past the
    sandbox's missing network, or spends what the budget does not see."""
    for name in _REFUSED_FIELDS[path]:
        if body.get(name) not in (None, False):
            raise Refusal(400, f"{name}: not allowed through this task's model proxy",
                          "unsupported_parameter")
    answers = body.get("n")
    if path == "/v1/chat/completions" and not (answers is None or (type(answers) is int
                                                                   and answers == 1)):
        # One answer is what the budget reserves for; Codex never asks for more.
        raise Refusal(400, "n: only one answer (n = 1) is allowed through this task's model "
                           "proxy", "unsupported_value")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise Refusal(400, "tools: a list is required")
        for index, tool in enumerate(tools):
            if not _client_tool(PATHS[path], tool):
                kind = tool.get("type") if isinstance(tool, dict) else None
                raise Refusal(400, f"tools.{index}: {str(kind)[:60]!r} is a tool the model API "
                                   "runs itself, which this task's model proxy does not allow; "
                                   "declare tools the agent runs", "unsupported_value")
    for name in ("messages", "system", "input"):
        where = _fetched_content(body.get(name))
        if where is not None:
            raise Refusal(400, f"{name}: {where} would make the model API fetch a URL or read a "
                               "stored file; send the content itself", "unsupported_value")


def _client_tool(provider: str, tool: Any) -> bool:
    if not isinstance(tool, dict):
        return False
    kind = tool.get("type")
    if provider == ANTHROPIC:
        return kind in (None, "custom") or (isinstance(kind, str)
                                            and bool(_ANTHROPIC_CLIENT_TOOL.fullmatch(kind)))
    if kind == "namespace":  # a named group of tools: each of them must be the caller's
        inner = tool.get("tools")
        return isinstance(inner, list) and all(
            isinstance(item, dict) and item.get("type") in _OPENAI_CLIENT_TOOLS for item in inner)
    if kind == "tool_search":
        return tool.get("execution") == "client"
    return kind in _OPENAI_CLIENT_TOOLS


def _fetched_content(value: Any) -> str | None:
    """What in a conversation the API would fetch or look up rather than read: an Anthropic
    source of type url or file, an OpenAI image_url or file_url that is not a data: URL, or a
    file_id. None when there is none."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            source = item.get("source")
            if isinstance(source, dict) and source.get("type") in ("url", "file"):
                return f"a source of type {source['type']}"
            for name in ("image_url", "file_url"):
                link = item.get(name)
                link = link.get("url") if isinstance(link, dict) else link
                if isinstance(link, str) and not link.startswith("data:"):
                    return f"an {name} that is not a data: URL"
            if item.get("file_id") is not None:
                return "a file_id"
            # A tool call's arguments are the agent's own, not content the API reads.
            pending.extend(inner for name, inner in item.items()
                           if not (name == "input" and item.get("type") == "tool_use"))
    return None


def forwarded_betas(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers with each anthropic-beta cut to the values in ANTHROPIC_BETAS, and left out
    when none is."""
    kept = []
    for name, value in headers:
        if name.lower() == "anthropic-beta":
            allowed = [beta for part in value.split(",") if (beta := part.strip()) in ANTHROPIC_BETAS]
            if not allowed:
                continue
            value = ",".join(allowed)
        kept.append((name, value))
    return kept


def output_cap_field(path: str, body: dict[str, Any]) -> str:
    """The field of a request that bounds the tokens its answer may have."""
    if path == "/v1/messages":
        return "max_tokens"
    if path == "/v1/responses":
        return "max_output_tokens"
    return "max_tokens" if "max_tokens" in body and "max_completion_tokens" not in body \
        else "max_completion_tokens"


def output_cap(path: str, body: dict[str, Any]) -> int | None:
    """The request's bound on its answer's tokens; None when it gives none (the Messages API
    requires one). Refusal when the bound is not a positive whole number."""
    name = output_cap_field(path, body)
    value = body.get(name)
    if value is None and path != "/v1/messages":
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Refusal(400, f"{name}: a positive integer is required")
    return value


# The smallest bound on an answer each API accepts: the Responses API refuses a
# max_output_tokens below 16, so a budget that pays for fewer has stopped the task.
SMALLEST_OUTPUT_CAP = {"/v1/responses": 16}


def affordable_output(budget: Budget, usage: Usage, cost: float | None,
                      price: Price | None) -> int | None:
    """How many output tokens the rest of the budget pays for; None when it sets no bound."""
    bounds = []
    if budget.tokens is not None:
        bounds.append(budget.tokens - usage.tokens)
    if budget.usd is not None:
        if cost is None or price is None:
            bounds.append(0)  # spending that cannot be known is never allowed
        elif price.output > 0:
            bounds.append(math.floor((budget.usd - cost) * 1_000_000 / price.output))
    return max(0, min(bounds)) if bounds else None


def error_body(provider: str | None, status: int, message: str, code: str | None = None) -> bytes:
    """An error in the shape the provider's clients read."""
    if provider == ANTHROPIC:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    kind = {401: "invalid_request_error", 429: "insufficient_quota"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code}}).encode()


def _redact(data: bytes, secret: bytes) -> bytes:
    return data.replace(secret, REDACTED) if secret else data


def _budget_message(provider: str, left: int | None) -> tuple[int, str, str]:
    """What a budget refusal says: OpenAI's clients treat insufficient_quota as final, and
    Anthropic's a 400, as they do when an account cannot pay."""
    text = ("this task's budget is spent" if not left else
            f"this task's budget pays for at most {left:,} more output tokens: ask for fewer")
    return (400, text, "budget_exceeded") if provider == ANTHROPIC else \
        (429, text, "insufficient_quota")


class _Ledger:
    """The task's usage and cost: finished calls, plus what calls in flight have used so far."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self._lock = threading.Lock()
        self._usage = Usage()
        self._cost: float | None = 0.0
        self._open: dict[int, tuple[Usage, Price | None]] = {}
        # The estimated input and the largest answer of each call in flight: what a call
        # admitted alongside it must leave room for, until the API reports what it used.
        self._reserved: dict[int, tuple[Usage, Price | None]] = {}
        self.stopped_at_budget = False

    def spent(self) -> tuple[Usage, float | None]:
        with self._lock:
            return self._spent()

    def _spent(self) -> tuple[Usage, float | None]:
        usage, cost = self._usage, self._cost
        for used, price in self._open.values():
            usage, cost = usage + used, _add_cost(cost, used, price)
        return usage, cost

    def admit(self, key: int, provider: str, wanted: int | None, price: Price | None,
              input_estimate: int = 0, smallest: int = 1) -> int | None:
        """Refuse a call whose largest answer the budget cannot pay for, counting what the
        calls in flight have reserved as spent, or that would get a bound below `smallest`, the
        least the API accepts; else reserve its estimated input and its largest answer until
        `release`. Its own input is not held against it: the API counts
        it, and a stream is cut once it spends the budget. Returns the bound to set when the
        call gives none; Refusal when it cannot be paid."""
        with self._lock:
            usage, cost = self._spent()
            for other, (reserved, reserved_price) in self._reserved.items():
                rest = _unreported(reserved, self._open.get(other, (Usage(), None))[0])
                usage, cost = usage + rest, _add_cost(cost, rest, reserved_price)
            left = affordable_output(self.budget, usage, cost, price)
            if left is None:
                return None
            if left < smallest or (wanted is not None and wanted > left):
                self.stopped_at_budget = True
                raise Refusal(*_budget_message(provider, left))
            bound = left if wanted is None else wanted
            self._reserved[key] = (Usage(input_tokens=input_estimate, output_tokens=bound), price)
            return left if wanted is None else None

    def release(self, key: int) -> None:
        with self._lock:
            self._reserved.pop(key, None)

    def update(self, key: int, used: Usage, price: Price | None) -> BudgetState:
        with self._lock:
            self._open[key] = (used, price)
            return budget_state(self.budget, *self._spent())

    def finish(self, key: int, used: Usage, price: Price | None) -> None:
        with self._lock:
            self._open.pop(key, None)
            self._usage = self._usage + used
            self._cost = _add_cost(self._cost, used, price)

    def cut(self) -> None:
        with self._lock:
            self.stopped_at_budget = True


def _unreported(reserved: Usage, used: Usage) -> Usage:
    """What a reservation still holds once the API reported `used` so far: the estimated input
    until the API counts the input (its count then replaces the estimate), and the rest of the
    largest answer."""
    counted_input = used.input_tokens + used.cache_write_tokens + used.cache_read_tokens
    return Usage(input_tokens=0 if counted_input else reserved.input_tokens,
                 output_tokens=max(0, reserved.output_tokens - used.output_tokens))


def _add_cost(cost: float | None, used: Usage, price: Price | None) -> float | None:
    if used.tokens == 0:
        return cost
    more = cost_usd(used, price)
    return None if cost is None or more is None else cost + more


class _StreamMeter:
    """Reads the usage in a stream of server-sent events, one whole event at a time."""

    def __init__(self, provider: str):
        self.provider = provider
        self.reported: dict[str, Any] = {}
        self.final = False  # the API reported the call's final usage
        self._chars = 0

    def read(self, event: bytes) -> None:
        data = "\n".join(line[5:].removeprefix(" ") for line in
                         event.decode("utf-8", "replace").splitlines() if line.startswith("data:"))
        try:
            message = json.loads(data)
        except ValueError:
            return  # e.g. "[DONE]", or a comment
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if self.provider == ANTHROPIC:
            if kind == "message_start" and isinstance(message.get("message"), dict):
                self._merge(message["message"].get("usage"))
            elif kind == "message_delta":
                self._merge(message.get("usage"))
                self.final = True
            elif kind == "content_block_delta":
                self._chars += _text_length(message.get("delta"))
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = message.get("response")
            self._merge(response.get("usage") if isinstance(response, dict) else None)
            self.final = True
        elif isinstance(kind, str) and kind.endswith(".delta"):
            self._chars += _text_length(message.get("delta"))
        elif isinstance(message.get("choices"), list) or "usage" in message:  # a chat chunk
            for choice in message.get("choices") or []:
                if isinstance(choice, dict):
                    self._chars += _text_length(choice.get("delta"))
            if isinstance(message.get("usage"), dict):
                self._merge(message["usage"])
                self.final = True

    def _merge(self, usage: Any) -> None:
        # Anthropic's message_delta repeats some counts, cumulatively, and may give others null.
        if isinstance(usage, dict):
            self.reported.update({key: value for key, value in usage.items() if value is not None})

    @property
    def usage(self) -> Usage:
        reported = usage_of(self.reported) if self.provider == ANTHROPIC else \
            openai_usage_of(self.reported)
        if self.final:
            return reported
        estimate = math.ceil(self._chars / CHARS_PER_TOKEN)
        return replace(reported, output_tokens=max(reported.output_tokens, estimate))


def _text_length(value: Any) -> int:
    """Characters of text in a delta, leaving out what names its kind."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_length(item) for key, item in value.items()
                   if key not in ("type", "role", "id", "index"))
    if isinstance(value, list):
        return sum(_text_length(item) for item in value)
    return 0


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _events(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole server-sent events, each with the blank line that ends it, as they arrive."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while match := _EVENT_END.search(pending):
            yield pending[:match.end()]
            pending = pending[match.end():]
        if len(pending) > MAX_EVENT_BYTES:
            raise ValueError("an event of the stream is too large")
    if pending.strip():
        yield pending


def _cut_event(provider: str, path: str, message: str) -> bytes:
    """What a client reads when its stream is cut at the budget, in its API's error event."""
    if provider == ANTHROPIC:
        payload = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
        return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"
    if path == "/v1/responses":
        payload = {"type": "error", "code": "insufficient_quota", "message": message,
                   "param": None, "sequence_number": 0}
        return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"
    payload = {"error": {"message": message, "type": "insufficient_quota", "param": None,
                         "code": "insufficient_quota"}}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


# The server.

class ModelProxy:
    """Serves one task's model calls on a Unix socket until `close()`.

    `upstreams` maps "anthropic" and/or "openai" to where their calls go; a provider left out
    is not served. `allowed_models` are the task's model and the small model its CLI uses in
    the background. `budget` and `prices` are the task's, as app/budget.py models them.

    The socket file gets `mode` and, when given, `owner` (uid, gid): a process must be able to
    write the file to connect, so give it to the sandbox's uid (61000 by default) with mode
    0600, or to a group the sandbox's user is in with 0660, and keep the directory it is in
    private to the runner and that user. Changing the owner needs root or CAP_CHOWN.
    """

    def __init__(self, socket_path: str | os.PathLike[str], upstreams: Mapping[str, Upstream],
                 token: str, allowed_models: Collection[str], budget: Budget = Budget(),
                 prices: Mapping[str, Price] | None = None, *,
                 owner: tuple[int, int] | None = None, mode: int = 0o600,
                 max_body_bytes: int = MAX_BODY_BYTES, client_timeout: float = CLIENT_TIMEOUT,
                 upstream_timeout: httpx.Timeout = UPSTREAM_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS):
        if len(token) < 16:
            raise ValueError("the proxy's token must be a random string of at least 16 characters")
        unknown = set(upstreams) - {ANTHROPIC, OPENAI}
        if unknown or not upstreams:
            raise ValueError(f"upstreams must name {ANTHROPIC!r} and/or {OPENAI!r}")
        for name, upstream in upstreams.items():
            if not upstream.api_key or not re.match(r"https?://[^/\s]+", upstream.base_url):
                raise ValueError(f"the {name} upstream needs an http(s) base URL and an API key")
        if not allowed_models:
            raise ValueError("allowed_models must name at least the task's model")
        self.socket_path = os.fspath(socket_path)
        self._upstreams = dict(upstreams)
        self._token = token
        self._allowed = frozenset(allowed_models)
        self._prices = dict(prices or {})
        self._ledger = _Ledger(budget)
        self._owner, self._mode = owner, mode
        self._max_body = max_body_bytes
        self._client_timeout = client_timeout
        self._max_connections = max_connections
        self._http = httpx.Client(timeout=upstream_timeout, follow_redirects=False, trust_env=False)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._connections: dict[int, tuple[socket.socket, threading.Thread]] = {}
        self._upstream_sockets: dict[int, socket.socket] = {}
        self._next_exchange = 0

    @property
    def usage(self) -> Usage:
        """Every token the task's calls used so far, calls in flight included."""
        return self._ledger.spent()[0]

    @property
    def cost_usd(self) -> float | None:
        """What the task's calls cost so far; None when a model used has no price."""
        return self._ledger.spent()[1]

    @property
    def stopped_at_budget(self) -> bool:
        """The budget refused a call or cut a stream: the task stopped at its budget."""
        return self._ledger.stopped_at_budget

    def start(self) -> ModelProxy:
        if self._server is not None or self._closing:
            raise RuntimeError("the model proxy was already started")
        if os.path.lexists(self.socket_path):
            raise FileExistsError(f"{self.socket_path} already exists")
        # Bound under a temporary name and renamed once its mode and owner are set, so the
        # socket is never reachable at its path with the process's default permissions.
        temporary = f"{self.socket_path}.{os.getpid()}.{threading.get_ident()}.new"
        server = _Server(temporary, self)
        try:
            os.chmod(temporary, self._mode)
            if self._owner is not None:
                os.chown(temporary, *self._owner)
            server.server_activate()
            os.rename(temporary, self.socket_path)
        except BaseException:
            server.server_close()
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._inode = os.stat(self.socket_path).st_ino
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="model-proxy", daemon=True)
        self._thread.start()
        log.info("model proxy serving %s", self.socket_path)
        return self

    def close(self) -> None:
        """Stop answering: the socket file goes, and every call in flight is cut."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            connections = list(self._connections.values())
            upstream = list(self._upstream_sockets.values())
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(timeout=10)
        self._remove_socket_file()
        for sock in [client for client, _ in connections] + upstream:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._http.close()
        for _, thread in connections:
            thread.join(timeout=10)
        log.info("model proxy closed: %s tokens", f"{self.usage.tokens:,}")

    def __enter__(self) -> ModelProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _remove_socket_file(self) -> None:
        # Only the socket this proxy bound: never a file someone put there since.
        with contextlib.suppress(OSError):
            found = os.lstat(self.socket_path)
            if stat.S_ISSOCK(found.st_mode) and found.st_ino == self._inode:
                os.unlink(self.socket_path)

    # Bookkeeping the handlers call.

    def _accepting(self) -> bool:
        with self._lock:
            return not self._closing and len(self._connections) < self._max_connections

    def _track(self, key: int, sock: socket.socket) -> None:
        with self._lock:
            self._connections[key] = (sock, threading.current_thread())
        if self._closing:  # close() ran between accepting and tracking
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _untrack(self, key: int) -> None:
        with self._lock:
            self._connections.pop(key, None)

    def _exchange_key(self) -> int:
        with self._lock:
            self._next_exchange += 1
            return self._next_exchange


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False  # close() cuts and joins the handlers itself
    request_queue_size = 16

    def __init__(self, path: str, proxy: ModelProxy):
        self.proxy = proxy
        super().__init__(path, _Handler, bind_and_activate=False)
        try:
            self.server_bind()
        except BaseException:
            self.server_close()
            raise

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.proxy._accepting()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "async-code-model-proxy"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        self.proxy = self.server.proxy
        self.timeout = self.proxy._client_timeout
        self.provider: str | None = None
        self.connection_key = id(self)
        self.proxy._track(self.connection_key, self.request)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.proxy._untrack(self.connection_key)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (OSError, ValueError) as error:
            # The client went away or stopped sending; with the proxy closed this is expected.
            log.debug("model proxy connection ended: %s", type(error).__name__)
            self.close_connection = True

    def parse_request(self) -> bool:
        self.provider = None
        if not super().parse_request():
            return False
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.0"  # so the refusal is written with its headers
            self._refuse(Refusal(400, "HTTP/1.1 is required"))
            return False
        if self.command != "POST":
            try:
                self.provider = provider_of(self.path)[0]
            except Refusal as refusal:
                self._refuse(refusal)
            else:
                self._refuse(Refusal(405, f"{self.command} is not allowed: the model proxy "
                                          "serves POST only"))
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The parser's refusals (a malformed request line, too many or too long headers), in
        # JSON, and never a 5xx: the fault is the request's.
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.0"  # a request line too broken to name its version
        self._refuse(Refusal(400 if code >= 500 else code, message or "bad request"))

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the proxy logs each call itself, without addresses, keys or tokens

    def do_POST(self) -> None:
        try:
            self.provider, path, query = provider_of(self.path)
            upstream = self.proxy._upstreams.get(self.provider)
            if upstream is None:
                raise Refusal(404, f"this task's model proxy serves no {self.provider} model")
            headers = list(self.headers.items())
            if not authenticated(headers, self.proxy._token):
                raise Refusal(401, "invalid API key: use the key this task's environment gives",
                              "invalid_api_key")
            raw = self._read_body()
            try:
                body = parse_body(raw)
            except TooManyValues:
                # Refused unparsed; a model the task may not use is still named as the fault.
                self._check_model(top_level_model(raw))
                raise
            model = self._check_model(body.get("model"))
            refuse_what_reaches_past_the_api(path, body)
            price = self.proxy._prices.get(model)
            key = self.proxy._exchange_key()
            if path not in UNBILLED_PATHS:
                self._bound_output(key, path, body, price,
                                   math.ceil(len(raw) / CHARS_PER_TOKEN))
            del raw
        except Refusal as refusal:
            self._refuse(refusal)
            return
        try:
            self._forward(key, upstream, path, query, headers, body, model, price)
        finally:
            self.proxy._ledger.release(key)

    def _check_model(self, model: Any) -> str:
        if not isinstance(model, str) or model not in self.proxy._allowed:
            raise Refusal(403, f"model {str(model)[:100]!r} is not allowed for this task; "
                               f"use {' or '.join(sorted(self.proxy._allowed))}",
                          "model_not_allowed")
        return model

    def _read_body(self) -> bytes:
        if self.headers.get_all("transfer-encoding"):
            raise Refusal(411, "send the body with a Content-Length, not a Transfer-Encoding")
        lengths = self.headers.get_all("content-length") or []
        if not lengths:
            raise Refusal(411, "a Content-Length is required")
        if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,12}", lengths[0].strip()):
            raise Refusal(400, "the Content-Length is not one whole number")
        length = int(lengths[0])
        if length > self.proxy._max_body:
            raise Refusal(413, f"the body is larger than {self.proxy._max_body:,} bytes")
        raw = self.rfile.read(length)
        if len(raw) != length:
            raise Refusal(400, "the body is shorter than its Content-Length")
        return raw

    def _bound_output(self, key: int, path: str, body: dict[str, Any], price: Price | None,
                      input_estimate: int) -> None:
        wanted = output_cap(path, body)
        bound = self.proxy._ledger.admit(key, self.provider, wanted, price, input_estimate,
                                         smallest=SMALLEST_OUTPUT_CAP.get(path, 1))
        if bound is not None:
            # An uncapped call on a budget gets the cap the budget can pay for, so that even an
            # answer that is not streamed cannot run past the budget.
            body[output_cap_field(path, body)] = bound
        if path == "/v1/chat/completions" and body.get("stream") is True:
            # Without it a streamed chat completion reports no usage at all.
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}

    def _forward(self, key: int, upstream: Upstream, path: str, query: str,
                 headers: list[tuple[str, str]], body: dict[str, Any], model: str,
                 price: Price | None) -> None:
        url = upstream.base_url.rstrip("/") + path + (f"?{query}" if query else "")
        content = json.dumps(body).encode()
        kept = forwarded_headers(headers, self.provider, upstream.api_key)
        if self.provider == ANTHROPIC:
            kept = forwarded_betas(kept)
        sent = [(name, value) for name, value in kept
                if name.lower() != "content-type"] + [("content-type", "application/json")]
        secret = upstream.api_key.encode()
        try:
            request = self.proxy._http.build_request("POST", url, headers=sent, content=content)
            response = self.proxy._http.send(request, stream=True)
        except httpx.TimeoutException:
            self._refuse(Refusal(504, "the model API did not answer in time"))
            return
        except (httpx.HTTPError, RuntimeError, OSError):  # RuntimeError: the proxy was closed
            self._refuse(Refusal(502, "the model API could not be reached"))
            return
        try:
            self._watch_upstream(key, response)
            log.info("model call %s %s (%s): HTTP %s", self.provider, path, model,
                     response.status_code)
            if response.status_code in (401, 403):
                # The upstream refused the service's own key: nothing the client can fix, and
                # its message may quote part of the key.
                self._refuse(Refusal(502, "the model API refused this service's credentials; "
                                          "the operator must check the API key"))
                return
            is_stream = response.headers.get("content-type", "").startswith("text/event-stream")
            if is_stream and response.status_code == 200 and path not in UNBILLED_PATHS:
                self._relay_stream(key, response, path, price, secret)
            else:
                self._relay_whole(key, response, path, price, secret)
        except (httpx.HTTPError, OSError, ValueError) as error:
            # The upstream or the client went away mid-answer, or the proxy was closed.
            log.info("model call %s %s cut: %s", self.provider, path, type(error).__name__)
            self.close_connection = True
        finally:
            response.close()
            self.proxy._upstream_sockets.pop(key, None)

    def _watch_upstream(self, key: int, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with self.proxy._lock:
                self.proxy._upstream_sockets[key] = sock
        if self.proxy._closing:
            raise OSError("the model proxy is closed")

    def _relay_whole(self, key: int, response: httpx.Response, path: str, price: Price | None,
                     secret: bytes) -> None:
        raw = b""
        for chunk in response.iter_bytes():
            raw += chunk
            if len(raw) > MAX_RESPONSE_BYTES:
                self._refuse(Refusal(502, "the model API's answer is too large"))
                return
        if response.status_code == 200 and path not in UNBILLED_PATHS:
            try:
                reported = json.loads(raw).get("usage")
            except (ValueError, AttributeError):
                reported = None
            used = (usage_of(reported) if self.provider == ANTHROPIC else openai_usage_of(reported)) \
                if isinstance(reported, dict) else Usage()
            self.proxy._ledger.finish(key, used, price)
        self.send_response(response.status_code)
        for name, value in relayed_headers(list(response.headers.items()), secret.decode()):
            self.send_header(name, value)
        data = _redact(raw, secret)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _relay_stream(self, key: int, response: httpx.Response, path: str, price: Price | None,
                      secret: bytes) -> None:
        chunked = self.request_version == "HTTP/1.1"
        self.send_response(200)
        for name, value in relayed_headers(list(response.headers.items()), secret.decode()):
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        meter = _StreamMeter(self.provider)
        ledger = self.proxy._ledger
        try:
            for event in _events(response.iter_bytes()):
                meter.read(event)
                if ledger.update(key, meter.usage, price) is BudgetState.STOP and not meter.final:
                    # Relayed whole, the stream would spend past the budget: end it with the
                    # API's error event. The final usage, when it comes, is relayed: it is paid.
                    ledger.cut()
                    log.info("model call %s %s cut at the task's budget", self.provider, path)
                    self._write(_cut_event(self.provider, path, "this task's budget is spent"),
                                chunked)
                    break
                self._write(_redact(event, secret), chunked)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            ledger.finish(key, meter.usage, price)

    def _write(self, data: bytes, chunked: bool) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        self.wfile.flush()

    def _refuse(self, refusal: Refusal) -> None:
        # Only the status: a message may quote what the client sent, the token included.
        log.info("model proxy refused a request: HTTP %s", refusal.status)
        body = error_body(self.provider, refusal.status, refusal.message, refusal.code)
        # The body may be unread: the connection cannot carry another request.
        self.close_connection = True
        try:
            self.send_response(refusal.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass
