"""The agents a task can run with, by the names people and settings use for them.

A request picks one with `--agent NAME`, a repository with the config key `agent:`, the operator
with ASYNC_CODE_AGENT; ASYNC_CODE_AGENTS lists the ones this service enables. Only agents this
version can run may be enabled, so a name here is never a promise the runner cannot keep.
"""

from __future__ import annotations

import re

DEFAULT_AGENT = "claude"

# Every agent name this product knows, with what it is, for `help` and for error messages.
KNOWN_AGENTS = {
    "claude": "the built-in agent: a Messages API loop run by the runner",
    "claude-code": "the Claude Code CLI, in the sandbox",
    "codex": "the Codex CLI, in the sandbox",
}
# The ones this version can run.
RUNNABLE_AGENTS = ("claude", "claude-code", "codex")

MAX_AGENT_NAME_CHARS = 40
_AGENT_NAME = re.compile(r"[a-z][a-z0-9-]*")


def agent_name_problem(name: str) -> str | None:
    """Why `name` cannot be an agent's name, or None when it can be one (known or not)."""
    if len(name) > MAX_AGENT_NAME_CHARS:
        return f"it is longer than {MAX_AGENT_NAME_CHARS} characters"
    if not _AGENT_NAME.fullmatch(name):
        return "it may hold only lower-case letters, digits and `-`, and starts with a letter"
    return None


def enabling_problem(name: str) -> str | None:
    """Why the operator may not enable `name`, or None when this version can run it."""
    if name not in KNOWN_AGENTS:
        return f"{name!r} is not an agent; the agents are {', '.join(KNOWN_AGENTS)}"
    if name not in RUNNABLE_AGENTS:
        return (f"{name!r} ({KNOWN_AGENTS[name]}) cannot run in this version; it can run "
                f"{', '.join(RUNNABLE_AGENTS)}")
    return None
