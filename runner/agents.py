"""The one interface the runner drives an agent through, and the agent a task runs with.

An agent works on the sandbox it is given until it answers, runs out of turns, time or budget,
and returns an AgentResult; how it reaches the model is its own business, but never with a
credential inside the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Protocol

import anthropic

from app.budget import Budget, Price
from runner.agent import AgentResult, ClaudeAgent
from runner.files import FileEditor
from runner.sandbox import Runtime


class Agent(Protocol):
    def run(self, *, request: str, repo: str, number: int, runtime: Runtime,
            editor: FileEditor, deadline: float, on_pull_request: bool = False,
            instructions: str = "",
            on_progress: Callable[[int, str], None] = lambda turn, tool: None) -> AgentResult: ...


def agent_version(name: str) -> str:
    """What a task records as the version of the agent it ran with."""
    if name == "claude":  # the built-in agent is part of this package
        return f"async-code {version('async-code')}"
    raise ValueError(f"no agent named {name!r} in this version")


def build_agent(name: str, *, client: anthropic.Anthropic, model: str, max_turns: int,
                budget: Budget, price: Price | None) -> Agent:
    """The agent `name`, one that settings validation let the operator enable."""
    if name == "claude":
        return ClaudeAgent(client, model=model, max_turns=max_turns, budget=budget, price=price)
    raise ValueError(f"no agent named {name!r} in this version")
