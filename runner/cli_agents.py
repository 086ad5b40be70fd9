"""The CLI agents: Claude Code (`claude-code`) and Codex (`codex`), run inside the sandbox.

The CLI never holds a credential. For each task the runner serves a ModelProxy on a Unix socket
in the task's directory, outside the work tree, and bind-mounts that directory (read-only) and
the tools directory (read-only) into the sandbox. There the forwarder relays 127.0.0.1:PORT to
the socket, and the CLI is pointed at that address with a random per-task token as its key; the
proxy swaps it for the real key, lets only the task's models through and keeps the budget.

Each CLI has an adapter (`Cli`): its argv and environment, and a reader for its event stream
that turns events into progress, a transcript and the final answer. `CliAgent` does the rest
the same way for both, and returns the AgentResult the built-in agent returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from docker.types import Mount

from app.budget import Budget, Price, Usage, cost_usd
from runner import agent_tools
from runner.agent import (MAX_TOKENS, TRANSCRIPT_RESULT_LIMIT, AgentError, AgentResult,
                          AgentTimeout, _clip, system_prompt)
from runner.files import FileEditor
from runner.model_proxy import ANTHROPIC, OPENAI, ModelProxy, Upstream, affordable_output
from runner.sandbox import MOUNT_POINT, CommandResult, Runtime, SandboxGone

log = logging.getLogger(__name__)

# Where the task's model directory (socket, request, system prompt) appears in the sandbox.
MODEL_MOUNT = "/run/async-code"
SOCKET_NAME = "model.sock"
REQUEST_FILE = "request.md"
SYSTEM_FILE = "system.md"
# The forwarder's port on the sandbox's loopback; the sandbox has no other network.
FORWARDER_PORT = 8765
# The CLI's home: on the sandbox's /tmp tmpfs, gone with the container.
AGENT_HOME = "/tmp/agent-home"
# The size of a CLI's own home tmpfs (CliSetup.home_mount); it counts against the sandbox's memory.
HOME_MOUNT_BYTES = 256 * 1024**2
# Where the CLI's process id is written, for stopping a CLI that has no turn limit of its own.
PID_FILE = f"{AGENT_HOME}/cli.pid"
# How much of the CLI's stderr a failure quotes.
STDERR_SHOWN = 2_000

DEFAULT_ANTHROPIC_URL = "https://api.anthropic.com"
DEFAULT_OPENAI_URL = "https://api.openai.com"


class CliAgentUnavailable(RuntimeError):
    """A CLI agent cannot run: its tools do not verify or its key is not set. The message says
    what to fix."""


class ProcessRuntime(Runtime, Protocol):
    """What a CLI agent needs of the sandbox besides `run` (runner/sandbox.py's DockerRuntime)."""

    def run_process(self, argv: Sequence[str], *, environment: Mapping[str, str], timeout: float,
                    on_stdout: Callable[[bytes], None], max_stderr: int = 30_000) -> CommandResult: ...

    def start_background(self, argv: Sequence[str]) -> str: ...


@dataclass(frozen=True)
class CliSetup:
    """What the runner gives a CLI agent for one task."""

    tools_dir: Path  # verified; mounted read-only at agent_tools.MOUNT_POINT
    model_dir: Path  # the task's, outside the work tree; mounted read-only at MODEL_MOUNT
    owner: tuple[int, int]  # the sandbox user's ids on the host: it must reach the socket
    upstreams: Mapping[str, Upstream] = field(repr=False)
    prices: Mapping[str, Price] = field(default_factory=dict)
    home_mount: str | None = None  # a tmpfs of the CLI's own for its home, when it needs one

    def mounts(self) -> list[Mount]:
        mounts = [Mount(target=agent_tools.MOUNT_POINT, source=str(self.tools_dir), type="bind",
                        read_only=True),
                  Mount(target=MODEL_MOUNT, source=str(self.model_dir), type="bind",
                        read_only=True)]
        if self.home_mount is not None:
            mounts.append(Mount(target=self.home_mount, source=None, type="tmpfs",
                                tmpfs_size=HOME_MOUNT_BYTES, tmpfs_mode=0o1777))
        return mounts


class EventReader(Protocol):
    """Reads a CLI's stdout, one JSON event a line."""

    transcript: list[dict[str, Any]]
    turns: int
    answer: str | None  # the final answer, once the CLI gave one
    said: str  # the last text the model said, for a stop before the answer
    max_turns: bool  # the CLI stopped at its turn limit
    error: str | None  # why the CLI says it failed

    def read(self, event: dict[str, Any]) -> None: ...


class Cli(Protocol):
    name: str  # the agent's name
    tool: str  # its binary in the tools directory
    provider: str  # the model proxy's upstream it uses
    home_mount: str | None  # where the sandbox mounts a tmpfs for its home; None: under /tmp
    limits_turns: bool  # it stops at max_turns itself; otherwise the runner stops it past them

    def background_models(self, model: str) -> set[str]: ...

    def missing_in_image(self, runtime: Runtime) -> str | None: ...

    def argv(self, *, model: str, max_turns: int) -> list[str]: ...

    def environment(self, *, base_url: str, token: str, model: str,
                    max_output_tokens: int) -> dict[str, str]: ...

    def reader(self, on_progress: Callable[[int, str], None]) -> EventReader: ...


def cli_setup(name: str, *, tools_dir: Path, model_dir: Path, owner: tuple[int, int],
              anthropic_key: str, anthropic_url: str, openai_key: str, openai_url: str,
              prices: Mapping[str, Price]) -> CliSetup:
    """Everything agent `name` needs from the service, checked before anything runs."""
    cli = CLIS[name]
    key, url, setting = ((anthropic_key, anthropic_url or DEFAULT_ANTHROPIC_URL, "ANTHROPIC_API_KEY")
                         if cli.provider == ANTHROPIC else
                         (openai_key, openai_url or DEFAULT_OPENAI_URL, "OPENAI_API_KEY"))
    if not key:
        raise CliAgentUnavailable(f"the agent {name} needs {setting}, which is not set")
    try:
        agent_tools.verify(tools_dir)
    except agent_tools.AgentToolsError as error:
        raise CliAgentUnavailable(f"the agent {name} cannot run: {error}") from None
    return CliSetup(tools_dir=tools_dir, model_dir=model_dir, owner=owner,
                    upstreams={cli.provider: Upstream(url, key)}, prices=prices,
                    home_mount=cli.home_mount)


def prepare_model_dir(directory: Path, owner: tuple[int, int]) -> None:
    """The task's model directory: private to the runner and the sandbox's user."""
    directory.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(directory, *owner)


@contextlib.contextmanager
def _short_path(directory: Path) -> Iterator[str]:
    """A path to `directory` short enough for a Unix socket's 108 bytes, whatever its depth:
    through an open descriptor of it in /proc/self/fd."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)


class _Lines:
    """Splits a byte stream into lines and hands each JSON object to `read`."""

    MAX_LINE = 16 * 1024**2

    def __init__(self, read: Callable[[dict[str, Any]], None]):
        self._read = read
        self._pending = b""
        self.unreadable = 0

    def add(self, chunk: bytes) -> None:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._line(line)
        if len(self._pending) > self.MAX_LINE:
            self._pending = b""
            self.unreadable += 1

    def close(self) -> None:
        if self._pending.strip():
            self._line(self._pending)
        self._pending = b""

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            self.unreadable += 1
            return
        if isinstance(event, dict):
            try:
                self._read(event)
            except Exception:  # one odd event must not lose the rest of the stream
                log.exception("could not read an agent event")
                self.unreadable += 1


def max_output_tokens(budget: Budget, price: Price | None) -> int:
    """The bound a CLI puts on each answer: the built-in agent's, or less when the whole budget
    pays for less, so that the proxy's check does not refuse every call of a small budget."""
    affordable = affordable_output(budget, Usage(), cost_usd(Usage(), price), price)
    return max(1, min(MAX_TOKENS, affordable)) if affordable is not None else MAX_TOKENS


class CliAgent:
    """Runs one CLI in the sandbox against the task's model proxy."""

    def __init__(self, cli: Cli, setup: CliSetup, *, model: str, max_turns: int,
                 budget: Budget = Budget(), price: Price | None = None):
        self._cli, self._setup = cli, setup
        self._model, self._max_turns = model, max_turns
        self._budget, self._price = budget, price

    def run(self, *, request: str, repo: str, number: int, runtime: ProcessRuntime,
            editor: FileEditor, deadline: float, on_pull_request: bool = False,
            instructions: str = "",
            on_progress: Callable[[int, str], None] = lambda turn, tool: None) -> AgentResult:
        cli, setup = self._cli, self._setup
        try:
            missing = cli.missing_in_image(runtime)
        except SandboxGone:
            raise AgentTimeout() from None
        if missing:
            raise AgentError(f"{cli.name} cannot run in this sandbox: {missing}")
        token = secrets.token_urlsafe(32)
        system = system_prompt(repo=repo, number=number, on_pull_request=on_pull_request,
                               instructions=instructions)
        for name, text in ((REQUEST_FILE, request), (SYSTEM_FILE, system)):
            path = setup.model_dir / name
            path.write_text(text)
            path.chmod(0o644)
        prices = {model: price for model, price in setup.prices.items()}
        if self._price is not None:
            prices[self._model] = self._price
        reader = cli.reader(on_progress)
        reader.transcript.append({"role": "user", "content": request})

        def read(event: dict[str, Any]) -> None:
            reader.read(event)
            if not cli.limits_turns and reader.turns > self._max_turns and not reader.max_turns:
                # The CLI has no turn limit: it is stopped as it starts the turn past it.
                reader.max_turns = True
                self._stop_cli(runtime)

        lines = _Lines(read)
        with _short_path(setup.model_dir) as short:
            proxy = ModelProxy(f"{short}/{SOCKET_NAME}", setup.upstreams, token,
                               {self._model, *cli.background_models(self._model)}, self._budget,
                               prices, owner=setup.owner if os.geteuid() == 0 else None,
                               mode=0o600)
            proxy.start()
            try:
                ran = self._run_cli(runtime, token, deadline, lines.add)
            finally:
                proxy.close()
        lines.close()
        result = AgentResult(answer="", turns=reader.turns, transcript=reader.transcript)
        result.count(proxy.usage, None)
        result.cost_usd = proxy.cost_usd
        if proxy.stopped_at_budget:
            result.stop, result.answer = "budget", reader.said
        elif reader.max_turns:
            result.stop, result.answer = "max_turns", reader.said
        elif reader.answer is not None and reader.error is None:
            result.answer = reader.answer
        else:
            why = reader.error or f"it exited with code {ran.exit_code} without an answer"
            tail = ran.output.strip()[-STDERR_SHOWN:]
            raise AgentError(f"{cli.name} failed: {_clip(why, STDERR_SHOWN)}"
                             + (f"\n\nIts error output ends:\n{tail}" if tail and not reader.error
                                else ""))
        log.info("%s ended (%s) after %d turns, %s tokens", cli.name, result.stop, result.turns,
                 f"{result.tokens:,}")
        return result

    def _stop_cli(self, runtime: ProcessRuntime) -> None:
        log.info("stopping %s past its %d turns", self._cli.name, self._max_turns)
        try:
            stopped = runtime.run(f'kill -TERM "$(cat {PID_FILE})"', timeout=30, max_output=1000)
        except SandboxGone:
            return
        if stopped.exit_code != 0:
            log.warning("could not stop %s: %s", self._cli.name, stopped.output.strip()[:500])

    def _run_cli(self, runtime: ProcessRuntime, token: str, deadline: float,
                 on_stdout: Callable[[bytes], None]) -> CommandResult:
        cli = self._cli
        socket_path = f"{MODEL_MOUNT}/{SOCKET_NAME}"
        environment = cli.environment(
            base_url=f"http://127.0.0.1:{FORWARDER_PORT}", token=token, model=self._model,
            max_output_tokens=max_output_tokens(self._budget, self._price))
        argv = cli.argv(model=self._model, max_turns=self._max_turns)
        # The CLI's home is made on the sandbox's tmpfs; its process id is kept (exec keeps the
        # shell's) to stop it by; the request comes on its stdin.
        launch = ["sh", "-c", f'mkdir -p "$HOME" "${{CODEX_HOME:-$HOME}}" && echo $$ > {PID_FILE} '
                  f'&& exec "$@" < {MODEL_MOUNT}/{REQUEST_FILE}',
                  "sh", *argv]
        try:
            runtime.start_background(agent_tools.forwarder_argv(FORWARDER_PORT, socket_path))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentTimeout()
            log.info("starting %s: %s", cli.name, shlex.join(argv[:4]))
            ran = runtime.run_process(launch, environment={"HOME": AGENT_HOME, **environment},
                                      timeout=remaining, on_stdout=on_stdout)
        except SandboxGone:
            raise AgentTimeout() from None
        if ran.timed_out:
            raise AgentTimeout()
        return ran


# What the transcript of a CLI agent keeps. The CLI's events are the sandbox's words: a process
# the agent starts can write into the CLI's output, so nothing in them is trusted to be small.
TRANSCRIPT_MAX_CHARS = 2_000_000  # one transcript, as stored with the task and as an artifact
_MAX_ITEMS = 100  # of one list or object in an event
_MAX_DEPTH = 8
_KEY_CHARS = 100


def _bounded(value: Any, depth: int = 0) -> Any:
    """`value` with every text clipped like a tool result, and its lists, objects and nesting
    cut to a size no event of a real CLI comes near."""
    if isinstance(value, str):
        return _clip(value, TRANSCRIPT_RESULT_LIMIT)
    if depth >= _MAX_DEPTH and isinstance(value, (list, dict)):
        return "[cut: nested too deep]"
    if isinstance(value, list):
        return [_bounded(item, depth + 1) for item in value[:_MAX_ITEMS]]
    if isinstance(value, dict):
        return {str(key)[:_KEY_CHARS]: _bounded(item, depth + 1)
                for key, item in list(value.items())[:_MAX_ITEMS]}
    return value


class _Transcript(list):
    """The messages kept, each bounded, until TRANSCRIPT_MAX_CHARS; then one note says the rest
    was left out."""

    def __init__(self) -> None:
        super().__init__()
        self._chars = 0
        self._full = False

    def keep(self, message: dict[str, Any]) -> None:
        if self._full:
            return
        message = _bounded(message)
        self._chars += len(json.dumps(message))
        if self._chars > TRANSCRIPT_MAX_CHARS:
            self._full = True
            message = {"role": message.get("role", "user"), "content": [{"type": "text", "text": (
                f"[async-code: the transcript passed {TRANSCRIPT_MAX_CHARS:,} characters; "
                "the rest was left out]")}]}
        self.append(message)

    def add_to_last(self, blocks: list[Any]) -> None:
        """More blocks of the last message (one answer the CLI printed in several events)."""
        if self._full or not self:
            return
        blocks = _bounded(blocks[:_MAX_ITEMS])
        self._chars += len(json.dumps(blocks))
        if self._chars > TRANSCRIPT_MAX_CHARS:
            self.keep({"role": "user", "content": ""})  # only to say the rest was left out
            return
        self[-1]["content"].extend(blocks)


class ClaudeCodeReader:
    """Claude Code's `--output-format stream-json --verbose`: a `system` event first, then an
    `assistant` event for each content block the model sends (blocks of one answer share its
    message id), a `user` event with each turn's tool results, and a `result` event last."""

    def __init__(self, on_progress: Callable[[int, str], None]):
        self._on_progress = on_progress
        self.transcript = _Transcript()
        self.turns = 0
        self.answer: str | None = None
        self.said = ""
        self.max_turns = False
        self.error: str | None = None
        self._message_id: str | None = None

    def read(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        if kind == "assistant":
            if message.get("model") == "<synthetic>":
                return  # the CLI's own note of an API error, not the model's words
            content = message.get("content")
            content = [block for block in content if isinstance(block, dict)] \
                if isinstance(content, list) else []
            if message.get("id") != self._message_id or not self.transcript or \
                    self.transcript[-1]["role"] != "assistant":
                self._message_id = message.get("id")
                self.turns += 1
                self.transcript.keep({"role": "assistant", "content": []})
            self.transcript.add_to_last(content)
            text = "\n".join(str(block.get("text", "")) for block in content
                             if block.get("type") == "text").strip()
            self.said = text or self.said
            for block in content:
                if block.get("type") == "tool_use":
                    self._on_progress(self.turns, str(block.get("name")))
        elif kind == "user":
            self.transcript.keep({"role": "user", "content": message.get("content")})
        elif kind == "result":
            if event.get("subtype") == "error_max_turns":
                self.max_turns = True
            elif event.get("is_error") or event.get("subtype") != "success":
                self.error = str(event.get("result") or event.get("subtype") or "an error")
            else:
                self.answer = str(event.get("result") or "")


class ClaudeCode:
    name = "claude-code"
    tool = agent_tools.CLAUDE.tool
    provider = ANTHROPIC
    home_mount = None
    limits_turns = True  # --max-turns
    # The model it uses for small background work; the proxy lets it through, and nothing else.
    small_model = "claude-haiku-4-5"

    def background_models(self, model: str) -> set[str]:
        return {self.small_model}

    def missing_in_image(self, runtime: Runtime) -> str | None:
        found = runtime.run("command -v bash || command -v zsh", timeout=30, max_output=1000)
        if found.exit_code == 0:
            return None
        return ("its Bash tool needs bash (or zsh), and the sandbox image has neither: use an "
                "image that has bash, like python:3.12-bookworm")

    def argv(self, *, model: str, max_turns: int) -> list[str]:
        # Permission prompts are off because the sandbox is the boundary: no network, no
        # credential, a non-root user (Claude Code refuses the flag as root). WebSearch asks
        # the model API for its server-side search, which the proxy refuses, and WebFetch
        # needs a network the sandbox lacks: neither is offered to the model.
        return agent_tools.claude_argv(
            "-p", "--output-format", "stream-json", "--verbose", "--model", model,
            "--max-turns", str(max_turns), "--disallowedTools", "WebSearch,WebFetch",
            "--dangerously-skip-permissions",
            "--append-system-prompt-file", f"{MODEL_MOUNT}/{SYSTEM_FILE}")

    def environment(self, *, base_url: str, token: str, model: str,
                    max_output_tokens: int) -> dict[str, str]:
        return {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": token,
            "ANTHROPIC_SMALL_FAST_MODEL": self.small_model,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": self.small_model,
            "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(max_output_tokens),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_AUTOUPDATER": "1",
            # Its Bash tool needs bash (or zsh); it looks in SHELL first.
            "SHELL": "/bin/bash",
        }

    def reader(self, on_progress: Callable[[int, str], None]) -> EventReader:
        return ClaudeCodeReader(on_progress)


class CodexReader:
    """Codex's `exec --json`: thread.started, turn.started, then item.started/item.completed for
    each step (agent_message, reasoning, command_execution, file_change, error, ...), and
    turn.completed with the usage, or turn.failed with the error.

    Codex has no turn limit, and its events do not show each model call: a turn here is a tool
    step (a command, a patch), the way the runner can count and stop it."""

    TOOL_ITEMS = ("command_execution", "file_change", "mcp_tool_call", "web_search")

    def __init__(self, on_progress: Callable[[int, str], None]):
        self._on_progress = on_progress
        self.transcript = _Transcript()
        self.turns = 0
        self.answer: str | None = None
        self.said = ""
        self.max_turns = False  # set by the runner when it stops Codex past its turns
        self.error: str | None = None
        self._started: set[str] = set()

    def read(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        item_type = item.get("type")
        if kind == "item.started" and item_type in self.TOOL_ITEMS:
            self._started.add(str(item.get("id")))
            self.turns += 1
            self._on_progress(self.turns, str(item_type))
        elif kind == "item.completed":
            if item_type == "agent_message":
                text = str(item.get("text") or "").strip()
                if text:
                    self.said = text
                    self.transcript.keep({"role": "assistant",
                                          "content": [{"type": "text", "text": text}]})
            elif item_type == "error":  # a warning of Codex's own; the run goes on
                log.warning("codex: %s", _clip(str(item.get("message") or ""), STDERR_SHOWN))
            elif item_type in self.TOOL_ITEMS:
                if str(item.get("id")) not in self._started:
                    self.turns += 1
                    self._on_progress(self.turns, str(item_type))
                self._tool_call(item)
        elif kind == "turn.completed":
            self.answer = self.said
        elif kind == "turn.failed":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            self.error = str(error.get("message") or "the turn failed")
        elif kind == "error":  # a failed call it may still retry past; turn.failed ends it
            log.warning("codex: %s", _clip(str(event.get("message") or ""), STDERR_SHOWN))

    def _tool_call(self, item: dict[str, Any]) -> None:
        call_id = str(item.get("id"))
        if item.get("type") == "command_execution":
            call = {"command": item.get("command")}
            output = str(item.get("aggregated_output") or "")
            failed = item.get("exit_code") not in (0, None) or item.get("status") == "failed"
        else:
            call = {key: value for key, value in item.items() if key not in ("id", "type", "status")}
            output, failed = str(item.get("status") or ""), item.get("status") == "failed"
        self.transcript.keep({"role": "assistant", "content": [
            {"type": "tool_use", "id": call_id, "name": str(item.get("type")), "input": call}]})
        self.transcript.keep({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call_id, "is_error": failed,
             "content": _clip(output, TRANSCRIPT_RESULT_LIMIT)}]})


# The model provider Codex is given on its command line: the forwarder, over plain HTTP.
CODEX_PROVIDER = "async_code"
# Codex's home (CODEX_HOME): a tmpfs of its own, outside /tmp, gone with the container.
CODEX_HOME_MOUNT = "/run/async-code-home"


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


class Codex:
    name = "codex"
    tool = agent_tools.CODEX.tool
    provider = OPENAI
    # Codex puts helper commands (apply_patch among them) on the PATH of the commands it runs,
    # from its home; it refuses to when its home is under the temporary directory.
    home_mount = CODEX_HOME_MOUNT
    limits_turns = False

    def background_models(self, model: str) -> set[str]:
        return set()

    def missing_in_image(self, runtime: Runtime) -> str | None:
        return None  # static, and it runs commands with sh

    def argv(self, *, model: str, max_turns: int) -> list[str]:
        base_url = f"http://127.0.0.1:{FORWARDER_PORT}/v1"
        provider = (f'{{name="async-code", base_url={_toml_string(base_url)}, '
                    'env_key="OPENAI_API_KEY", wire_api="responses", supports_websockets=false}')
        # Approvals and Codex's own sandbox are off because the container is the boundary.
        return agent_tools.codex_argv(
            "exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
            "--model", model, "--cd", MOUNT_POINT,
            "-c", f"model_provider={CODEX_PROVIDER}",
            "-c", f"model_providers.{CODEX_PROVIDER}={provider}",
            "-c", "check_for_update_on_startup=false",
            "-c", "analytics.enabled=false",
            # Its hosted web search would reach the network from the API's side.
            "-c", 'web_search="disabled"',
            "-c", f"model_instructions_file={_toml_string(f'{MODEL_MOUNT}/{SYSTEM_FILE}')}",
            "-")

    def environment(self, *, base_url: str, token: str, model: str,
                    max_output_tokens: int) -> dict[str, str]:
        return {"OPENAI_API_KEY": token, "CODEX_HOME": f"{CODEX_HOME_MOUNT}/.codex",
                "SHELL": "/bin/sh", "NO_COLOR": "1"}

    def reader(self, on_progress: Callable[[int, str], None]) -> EventReader:
        return CodexReader(on_progress)


CLIS: dict[str, Cli] = {cli.name: cli for cli in (ClaudeCode(), Codex())}

