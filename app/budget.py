"""What a task's model calls cost, and what its budget says the agent may still do.

Pure decisions, no I/O: prices read from ASYNC_CODE_PRICES, the cost of the usage the Messages
API (or OpenAI's Responses and Chat Completions APIs) reports, and the state of a budget (ok,
wrap up, stop) for the usage so far.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The share of a budget at which the agent is told to wrap up.
WRAP_UP_AT = 0.8
PRICE_KEYS = ("input", "output", "cache_write", "cache_read")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
MAX_PRICE = 1_000_000.0  # USD per million tokens: far above any real price, catches a typo


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens of each kind. `cache_write` is the 5-minute cache's rate."""

    input: float
    output: float
    cache_write: float
    cache_read: float


# Anthropic's published prices (platform.claude.com/docs/en/about-claude/pricing), in USD per
# million tokens. ASYNC_CODE_PRICES replaces a model's entry, or adds one.
DEFAULT_PRICES: dict[str, Price] = {
    "claude-sonnet-4-6": Price(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30),
    "claude-haiku-4-5": Price(input=1.0, output=5.0, cache_write=1.25, cache_read=0.10),
}


@dataclass(frozen=True)
class Usage:
    """Tokens a task's model calls used, as the Messages API counts them: `input_tokens`
    excludes what was written to or read from the prompt cache."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def tokens(self) -> int:
        """Every token the task's calls processed; what a token budget counts."""
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     self.cache_write_tokens + other.cache_write_tokens,
                     self.cache_read_tokens + other.cache_read_tokens)


# More tokens than any budget allows (budgets stop at 10**12): a figure that cannot be read, or
# is larger, counts as this, so a hostile or broken usage report stops a budgeted task rather
# than slipping past it or crashing it.
UNREADABLE_USAGE = 10**12


def usage_of(reported: Any) -> Usage:
    """The usage object of a Messages API response, as the SDK's object or as the JSON object;
    cache fields may be absent or null."""
    def count(name: str) -> int:
        return _token_count(_field(reported, name))
    return Usage(count("input_tokens"), count("output_tokens"),
                 count("cache_creation_input_tokens"), count("cache_read_input_tokens"))


def openai_usage_of(reported: Any) -> Usage:
    """The usage JSON object of an OpenAI Responses API response (`input_tokens`,
    `output_tokens`, `input_tokens_details.cached_tokens`) or of a Chat Completions response
    (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`).

    OpenAI counts cached tokens inside the input; here they are taken out of it and counted as
    cache reads, as the Messages API reports them. OpenAI bills no cache writes. Reasoning
    tokens are already part of the output."""
    chat = _field(reported, "input_tokens") is None and _field(reported, "prompt_tokens") is not None
    input_tokens = _token_count(_field(reported, "prompt_tokens" if chat else "input_tokens"))
    output_tokens = _token_count(_field(reported, "completion_tokens" if chat else "output_tokens"))
    details = _field(reported, "prompt_tokens_details" if chat else "input_tokens_details")
    cached = _token_count(_field(details, "cached_tokens")) if details is not None else 0
    if cached > input_tokens:
        # A report that cannot be true; counting all of it as input costs the most.
        return Usage(input_tokens=max(input_tokens, cached), output_tokens=output_tokens)
    return Usage(input_tokens=input_tokens - cached, output_tokens=output_tokens,
                 cache_read_tokens=cached)


def _field(reported: Any, name: str) -> Any:
    if isinstance(reported, Mapping):
        return reported.get(name)
    return getattr(reported, name, None)


def _token_count(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return min(max(value, 0), UNREADABLE_USAGE)
    if isinstance(value, float) and math.isfinite(value):
        return min(max(math.ceil(value), 0), UNREADABLE_USAGE)
    return UNREADABLE_USAGE


def cost_usd(usage: Usage, price: Price | None) -> float | None:
    """What `usage` costs at `price`; None when the model has no price."""
    if price is None:
        return None
    return (usage.input_tokens * price.input + usage.output_tokens * price.output
            + usage.cache_write_tokens * price.cache_write
            + usage.cache_read_tokens * price.cache_read) / 1_000_000


def parse_prices(text: str) -> tuple[dict[str, Price], list[str]]:
    """The prices ASYNC_CODE_PRICES gives over the defaults, and what is wrong with it.

    The value is a JSON object: for each model, an object with `input`, `output`,
    `cache_write` and `cache_read`, each in USD per million tokens."""
    prices = dict(DEFAULT_PRICES)
    if not text.strip():
        return prices, []
    example = ('{"claude-sonnet-4-6": {"input": 3, "output": 15, "cache_write": 3.75, '
               '"cache_read": 0.3}}')
    try:
        document = json.loads(text, parse_constant=lambda name: name)  # NaN and Infinity as text
    except json.JSONDecodeError as error:
        return prices, [f"ASYNC_CODE_PRICES is not valid JSON ({error.msg}, at character "
                        f"{error.pos}); give an object like {example}"]
    except ValueError:  # e.g. an integer longer than Python reads
        return prices, [f"ASYNC_CODE_PRICES cannot be read as JSON; give an object like {example}"]
    if not isinstance(document, dict) or not document:
        return prices, [f"ASYNC_CODE_PRICES must be a JSON object of models, like {example}"]
    problems = []
    for model, entry in document.items():
        if not _MODEL_NAME.fullmatch(model):
            problems.append(f"ASYNC_CODE_PRICES: {model!r} is not a model name")
            continue
        if not isinstance(entry, dict):
            problems.append(f"ASYNC_CODE_PRICES: {model} must map to an object with "
                            f"{', '.join(PRICE_KEYS)}")
            continue
        missing = [key for key in PRICE_KEYS if key not in entry]
        unknown = sorted(key for key in entry if key not in PRICE_KEYS)
        if missing:
            problems.append(f"ASYNC_CODE_PRICES: {model} lacks {', '.join(missing)} (USD per "
                            "million tokens; 0 is allowed)")
        if unknown:
            problems.append(f"ASYNC_CODE_PRICES: {model} has unknown key(s) {', '.join(unknown)}; "
                            f"the keys are {', '.join(PRICE_KEYS)}")
        bad = [key for key in PRICE_KEYS if key in entry and not _is_price(entry[key])]
        if bad:
            problems.append(f"ASYNC_CODE_PRICES: {model}'s {', '.join(bad)} must be a number of "
                            f"US dollars per million tokens from 0 to {MAX_PRICE:,.0f}")
        if not (missing or unknown or bad):
            prices[model] = Price(**{key: float(entry[key]) for key in PRICE_KEYS})
    return prices, problems


def _is_price(value: Any) -> bool:
    # Compared before anything converts it: a huge integer would overflow a float.
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 <= value <= MAX_PRICE and (isinstance(value, int) or math.isfinite(value)))


class BudgetState(enum.Enum):
    OK = "ok"
    WRAP_UP = "wrap up"  # tell the agent to finish
    STOP = "stop"  # no further model call


@dataclass(frozen=True)
class Budget:
    """A task's limits; None means no limit of that kind."""

    tokens: int | None = None
    usd: float | None = None

    @property
    def limited(self) -> bool:
        return self.tokens is not None or self.usd is not None


def budget_state(budget: Budget, usage: Usage, cost: float | None) -> BudgetState:
    """Where the usage so far stands against the budget: the larger share of either limit
    decides. A USD limit with no known cost stops the task: spending is never unbounded."""
    shares = []
    if budget.tokens is not None:
        shares.append(usage.tokens / budget.tokens)
    if budget.usd is not None:
        shares.append(math.inf if cost is None else cost / budget.usd)
    share = max(shares, default=0.0)
    if share >= 1:
        return BudgetState.STOP
    if share >= WRAP_UP_AT:
        return BudgetState.WRAP_UP
    return BudgetState.OK


def describe_use(budget: Budget, usage: Usage, cost: float | None) -> str:
    """The figures, as in "52,000 of 50,000 tokens · $0.41 of $0.40"."""
    parts = []
    if budget.tokens is not None:
        parts.append(f"{usage.tokens:,} of {budget.tokens:,} tokens")
    else:
        parts.append(f"{usage.tokens:,} tokens")
    if budget.usd is not None:
        parts.append(f"{format_usd(cost)} of {format_usd(budget.usd)}")
    elif cost is not None:
        parts.append(format_usd(cost))
    return " · ".join(parts)


def describe_left(budget: Budget, usage: Usage, cost: float | None) -> str:
    """What is left of each limit, as in "9,000 tokens and $0.07 left"."""
    parts = []
    if budget.tokens is not None:
        parts.append(f"{max(0, budget.tokens - usage.tokens):,} tokens")
    if budget.usd is not None and cost is not None:
        parts.append(format_usd(max(0.0, budget.usd - cost)))
    return " and ".join(parts) + " left" if parts else "little left"


def format_usd(amount: float | None) -> str:
    """Cents, or four decimals for an amount under a cent, which cents would show as nothing."""
    if amount is None:
        return "an unknown cost"
    if 0 < amount < 0.01:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"
