"""Attacks on budgets and their settings: each test fails while the weakness it names is there.

The model API's usage figures are data from outside the runner; a budget must hold whatever
they say, and a bad ASYNC_CODE_PRICES must be a named problem, never a crash of `serve`.
"""

from __future__ import annotations

import time

import anthropic
import pytest

from app.budget import DEFAULT_PRICES, Budget
from app.settings import DEFAULT_MODEL, Settings
from runner.agent import ClaudeAgent
from runner.files import FileEditor
from tests.fakes.anthropic import Final, ToolCall, Turn
from tests.test_agent import LocalRuntime
from tests.test_settings import GOOD


@pytest.fixture
def client(model):
    sdk = anthropic.Anthropic(api_key=model.api_key, base_url=model.base_url, max_retries=0)
    yield sdk
    sdk.close()


def _run(client, tmp_path, *, budget, price=None):
    agent = ClaudeAgent(client, model=DEFAULT_MODEL, max_turns=10, budget=budget, price=price)
    return agent.run(request="fix it", repo="acme/widgets", number=7,
                     runtime=LocalRuntime(tmp_path), editor=FileEditor(tmp_path),
                     deadline=time.monotonic() + 30, on_progress=lambda turn, tool: None)


def _touch(name: str, usage: dict) -> Turn:
    return Turn([ToolCall("bash", {"command": f"touch {name}"})], text=f"Touching {name}.",
                usage=usage)


def test_usage_the_api_reports_as_a_float_still_counts_against_the_budget(client, model, tmp_path):
    # JSON has one number type: 5000.0 is five thousand tokens, not none.
    model.add_script("fix it", [
        _touch("a", {"input_tokens": 5000.0, "output_tokens": 100.0}),
        _touch("b", {"input_tokens": 5000.0, "output_tokens": 100.0}),
        _touch("c", {"input_tokens": 5000.0, "output_tokens": 100.0}),
        Final("never asked")])
    result = _run(client, tmp_path, budget=Budget(tokens=1000))
    assert result.stop == "budget"
    assert len(model.requests) == 1
    assert result.tokens >= 5100


def test_a_huge_usage_figure_stops_the_task_at_its_budget_rather_than_crashing(client, model,
                                                                               tmp_path):
    # A crash ends the task as an internal error: nothing committed, no "stopped at budget".
    model.add_script("fix it", [_touch("a", {"input_tokens": 10**400, "output_tokens": 1}),
                                Final("never asked")])
    result = _run(client, tmp_path, budget=Budget(tokens=1000, usd=1.0),
                  price=DEFAULT_PRICES[DEFAULT_MODEL])
    assert result.stop == "budget"
    assert len(model.requests) == 1


def test_a_huge_usage_figure_without_a_price_stops_at_a_token_budget(client, model, tmp_path):
    model.add_script("fix it", [_touch("a", {"input_tokens": 10**400, "output_tokens": 1}),
                                Final("never asked")])
    result = _run(client, tmp_path, budget=Budget(tokens=1000))
    assert result.stop == "budget"


@pytest.mark.parametrize("digits", [400, 5000], ids=["too big for a float", "too long for int()"])
def test_a_price_with_a_huge_integer_is_named_not_a_crash(digits):
    price = "1" + "0" * (digits - 1)
    settings = Settings.from_env({**GOOD, "ASYNC_CODE_PRICES":
                                  '{"m": {"input": %s, "output": 1, "cache_write": 1, '
                                  '"cache_read": 1}}' % price})
    problems = settings.problems(agent=True)  # what `serve` calls before it starts
    assert any("ASYNC_CODE_PRICES" in problem for problem in problems), problems
