"""Budgets and cost: the pure decisions, case by case."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.budget import (DEFAULT_PRICES, Budget, BudgetState, Price, Usage, budget_state, cost_usd,
                        describe_left, describe_use, format_usd, openai_usage_of,
                        usage_of)

SONNET = DEFAULT_PRICES["claude-sonnet-4-6"]


@pytest.mark.parametrize("usage, price, expected", [
    (Usage(), SONNET, 0.0),
    (Usage(input_tokens=1_000_000), SONNET, 3.0),
    (Usage(output_tokens=1_000_000), SONNET, 15.0),
    (Usage(cache_write_tokens=1_000_000), SONNET, 3.75),
    (Usage(cache_read_tokens=1_000_000), SONNET, 0.30),
    (Usage(10_000, 2_000, 4_000, 100_000), SONNET, 0.03 + 0.03 + 0.015 + 0.03),
    (Usage(10_000, 2_000), Price(1, 5, 1.25, 0.1), 0.01 + 0.01),
    (Usage(10_000, 2_000), None, None),
], ids=["nothing", "input", "output", "cache-write", "cache-read", "all-four", "other-price",
        "no-price"])
def test_cost_of_usage(usage, price, expected):
    cost = cost_usd(usage, price)
    assert cost == pytest.approx(expected) if expected is not None else cost is None


@pytest.mark.parametrize("reported, expected", [
    (SimpleNamespace(input_tokens=10, output_tokens=5), Usage(10, 5, 0, 0)),
    (SimpleNamespace(input_tokens=10, output_tokens=5, cache_creation_input_tokens=None,
                     cache_read_input_tokens=None), Usage(10, 5, 0, 0)),
    (SimpleNamespace(input_tokens=10, output_tokens=5, cache_creation_input_tokens=300,
                     cache_read_input_tokens=7000), Usage(10, 5, 300, 7000)),
], ids=["no-cache-fields", "null-cache-fields", "cache-fields"])
def test_usage_is_read_from_the_api_response(reported, expected):
    assert usage_of(reported) == expected


@pytest.mark.parametrize("reported, expected", [
    ({"input_tokens": 10, "output_tokens": 5}, Usage(10, 5, 0, 0)),
    ({"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 300,
      "cache_read_input_tokens": 7000}, Usage(10, 5, 300, 7000)),
    ({"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": None}, Usage(10, 5)),
    ({"input_tokens": "10", "output_tokens": 5}, Usage(10**12, 5)),
    ({"input_tokens": -3, "output_tokens": 2.5}, Usage(0, 3)),
], ids=["plain", "cache-fields", "null-cache-field", "text-is-unreadable", "negative-and-float"])
def test_usage_is_read_from_the_json_of_a_messages_response(reported, expected):
    assert usage_of(reported) == expected


@pytest.mark.parametrize("reported, expected", [
    ({"input_tokens": 1000, "output_tokens": 50, "total_tokens": 1050}, Usage(1000, 50)),
    ({"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 800}, "output_tokens": 50,
      "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 1050},
     Usage(200, 50, 0, 800)),
    ({"input_tokens": 1000, "input_tokens_details": None, "output_tokens": 50}, Usage(1000, 50)),
    ({"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050}, Usage(1000, 50)),
    ({"prompt_tokens": 1000, "prompt_tokens_details": {"cached_tokens": 600},
      "completion_tokens": 50}, Usage(400, 50, 0, 600)),
    ({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 500}, "output_tokens": 1},
     Usage(500, 1)),
    ({"input_tokens": 100, "input_tokens_details": {"cached_tokens": "many"}, "output_tokens": 1},
     Usage(10**12, 1)),
    ({}, Usage()),
], ids=["responses", "responses-cached", "responses-null-details", "chat", "chat-cached",
        "cached-above-input", "unreadable-cached", "empty"])
def test_openai_usage_counts_cached_input_as_cache_reads(reported, expected):
    assert openai_usage_of(reported) == expected


def test_openai_cached_input_costs_the_cache_read_price():
    price = Price(input=1.25, output=10.0, cache_write=0.0, cache_read=0.125)
    usage = openai_usage_of({"input_tokens": 1_000_000, "input_tokens_details": {"cached_tokens":
                                                                                  600_000},
                             "output_tokens": 100_000})
    assert cost_usd(usage, price) == pytest.approx(0.4 * 1.25 + 0.6 * 0.125 + 0.1 * 10.0)


def test_every_kind_of_token_counts_towards_a_token_budget():
    assert Usage(1, 2, 3, 4).tokens == 10 and (Usage(1, 2, 3, 4) + Usage(1, 1, 1, 1)).tokens == 14


@pytest.mark.parametrize("budget, usage, cost, state", [
    (Budget(), Usage(10**9, 10**9), 10_000.0, BudgetState.OK),
    (Budget(tokens=1000), Usage(700, 99), None, BudgetState.OK),
    (Budget(tokens=1000), Usage(700, 100), None, BudgetState.WRAP_UP),
    (Budget(tokens=1000), Usage(900, 99), None, BudgetState.WRAP_UP),
    (Budget(tokens=1000), Usage(900, 100), None, BudgetState.STOP),
    (Budget(tokens=1000), Usage(500, 100, 200, 200), None, BudgetState.STOP),
    (Budget(usd=1.0), Usage(1), 0.79, BudgetState.OK),
    (Budget(usd=1.0), Usage(1), 0.80, BudgetState.WRAP_UP),
    (Budget(usd=1.0), Usage(1), 1.20, BudgetState.STOP),
    (Budget(usd=1.0), Usage(1), None, BudgetState.STOP),
    (Budget(tokens=1000, usd=1.0), Usage(100), 0.85, BudgetState.WRAP_UP),
    (Budget(tokens=1000, usd=1.0), Usage(1000), 0.10, BudgetState.STOP),
], ids=["no-budget", "tokens-below", "tokens-at-80", "tokens-above-80", "tokens-at-100",
        "cache-tokens-count", "usd-below", "usd-at-80", "usd-above-100", "usd-unknown-cost",
        "usd-decides", "tokens-decide"])
def test_budget_state(budget, usage, cost, state):
    assert budget_state(budget, usage, cost) is state


@pytest.mark.parametrize("budget, usage, cost, use, left", [
    (Budget(tokens=50_000), Usage(40_000, 2_000), 0.15, "42,000 of 50,000 tokens · $0.15",
     "8,000 tokens left"),
    (Budget(usd=0.4), Usage(30_000, 1_000), 0.41, "31,000 tokens · $0.41 of $0.40", "$0.00 left"),
    (Budget(tokens=100, usd=2.0), Usage(50), 0.005, "50 of 100 tokens · $0.0050 of $2.00",
     "50 tokens and $2.00 left"),
    (Budget(tokens=100), Usage(120), None, "120 of 100 tokens", "0 tokens left"),
], ids=["tokens", "usd", "both", "over-no-cost"])
def test_the_figures_said_to_people_and_to_the_agent(budget, usage, cost, use, left):
    assert describe_use(budget, usage, cost) == use
    assert describe_left(budget, usage, cost) == left


@pytest.mark.parametrize("amount, shown", [(None, "an unknown cost"), (0, "$0.00"),
                                           (0.0042, "$0.0042"), (0.01, "$0.01"),
                                           (1234.5, "$1,234.50")])
def test_format_usd(amount, shown):
    assert format_usd(amount) == shown
