"""The one interface the runner drives an agent through, and the agent a task runs with.

An agent works on the sandbox it is given until it answers, runs out of turns, time or budget,
and returns an AgentResult; how it reaches the model is its own business, but never with a
credential inside the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import anthropic

from app.budget import Budget, Price
from app.settings import Settings
from runner import agent_tools
from runner.agent import AgentResult, ClaudeAgent
from runner.cli_agents import CLIS, CliAgent, CliSetup, cli_setup, prepare_model_dir
from runner.files import FileEditor
from runner.sandbox import Runtime

# The task's model directory, beside its work tree in the task's workspace.
MODEL_DIR_NAME = "agent"


class Agent(Protocol):
    def run(self, *, request: str, repo: str, number: int, runtime: Runtime,
            editor: FileEditor, deadline: float, on_pull_request: bool = False,
            instructions: str = "",
            on_progress: Callable[[int, str], None] = lambda turn, tool: None) -> AgentResult: ...


def agent_version(name: str, tools_dir: Path | None = None) -> str:
    """What a task records as the version of the agent it ran with: for a CLI, the version
    the tools directory's manifest records (verified), or the pinned one before it is read."""
    if name == "claude":  # the built-in agent is part of this package
        return f"async-code {version('async-code')}"
    if name in CLIS:
        tool = CLIS[name].tool
        pinned = agent_tools.NPM_PINS[tool].version
        found = agent_tools.verify(tools_dir)[tool].version if tools_dir is not None else pinned
        return f"{name} {found}"
    raise ValueError(f"no agent named {name!r} in this version")


def is_cli_agent(name: str) -> bool:
    return name in CLIS


def task_cli_setup(name: str, settings: Settings, tree: Path,
                   owner: tuple[int, int]) -> CliSetup:
    """What CLI agent `name` needs for the task whose work tree is `tree`: its tools, checked,
    its key, and a model directory beside the tree (never in it: nothing there is committed).
    Raises CliAgentUnavailable, saying what to fix, before anything runs."""
    setup = cli_setup(name, tools_dir=settings.agent_tools_path, model_dir=tree.parent / MODEL_DIR_NAME,
                      owner=owner, anthropic_key=settings.anthropic_api_key,
                      anthropic_url=settings.anthropic_base_url,
                      openai_key=settings.openai_api_key, openai_url=settings.openai_base_url,
                      prices=settings.model_prices)
    prepare_model_dir(setup.model_dir, owner)
    return setup


def build_agent(name: str, *, client: anthropic.Anthropic, model: str, max_turns: int,
                budget: Budget, price: Price | None, cli: CliSetup | None = None) -> Agent:
    """The agent `name`, one that settings validation let the operator enable; a CLI agent
    needs the task's `cli` setup."""
    if name == "claude":
        return ClaudeAgent(client, model=model, max_turns=max_turns, budget=budget, price=price)
    if name in CLIS:
        if cli is None:
            raise ValueError(f"the agent {name} needs the task's CLI setup")
        return CliAgent(CLIS[name], cli, model=model, max_turns=max_turns, budget=budget,
                        price=price)
    raise ValueError(f"no agent named {name!r} in this version")
