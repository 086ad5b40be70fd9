"""A repository's own settings: `.github/async-code.yml` on its default branch.

The file may give the agent extra instructions, pick the sandbox image and model, run setup
commands, and set the timeout, turns, branch prefix, draft pull requests and a budget. The
operator's settings are ceilings it may lower and never raise, and an image or model must be one
the operator allows. `effective_config` turns the file's text and the settings into the values a
task runs with, or raises one ConfigError whose message lists every problem, written for the
status comment. Nothing here does I/O: the runner fetches the file and calls it.

Types are strict, so nothing is guessed: `draft: yes` is refused rather than read as true (YAML
1.2 booleans are `true` and `false`), `max_turns: "20"` is text and refused, `usd: 5` is fine
(a whole number is a number), and `timeout` takes seconds as a number or a duration as text
(`"1800"`, `30m`, `1h30m`). A key with no value is refused; remove it to get the default.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from app.agents import DEFAULT_AGENT
from app.commands import MAX_COMPARED_AGENTS, MIN_COMPARED_AGENTS, branch_name_problem
from app.markdown import quoted
from app.settings import Settings
from app.strict_yaml import YamlRefused, load_yaml

CONFIG_PATH = ".github/async-code.yml"
# Read no more than this: a settings file is a few hundred bytes, and a large one costs the
# parser time and the status comment room.
MAX_FILE_BYTES = 64 * 1024
MAX_INSTRUCTIONS_CHARS = 10_000  # added to every prompt, so every turn pays for it
MAX_SETUP_COMMANDS = 20
MAX_SETUP_COMMAND_CHARS = 4_000
# A shorter timeout is most likely minutes written as seconds ("timeout: 30").
MIN_TIMEOUT_SECONDS = 60
MAX_BUDGET_TOKENS = 10**12  # far above any task, and within SQLite's integers
MAX_BRANCH_PREFIX_CHARS = 100  # the issue number and task id follow it
DEFAULT_BRANCH_PREFIX = "async-code/"
# What the runner appends to a prefix; a prefix is valid when prefix + this is a branch name.
BRANCH_SUFFIX_EXAMPLE = "12-3f9c2a1b"
KEYS = ("instructions", "image", "setup", "timeout", "max_turns", "model", "agent",
        "compare", "test", "branch_prefix", "draft", "budget")
COMMAND_LISTS = ("setup", "test")  # keys taking a shell command or a list of them
BUDGET_KEYS = ("tokens", "usd")
SHOWN_CHARS = 60  # of the file's text quoted back in one problem
MAX_PROBLEMS_SHOWN = 20
MAX_CHOICES_SHOWN = 10

_SECONDS = re.compile(r"[0-9]{1,9}")
_DURATION = re.compile(r"(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,9})s)?")
_BRANCH_PREFIX_CHARACTERS = re.compile(r"[A-Za-z0-9._/-]+")
_YAML_LINE_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # where YAML counts a new line


class ConfigError(ValueError):
    """The repository's config cannot be used. The message, in Markdown, lists every problem,
    each naming the key and what to do; the file's own text appears only in short code spans,
    so it can neither mention anyone nor link anywhere."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        super().__init__(
            f"{_code(CONFIG_PATH)} on the default branch cannot be used:\n"
            + "".join(f"- {problem}\n" for problem in shown)
            + (f"- and {more} more\n" if more else "")
            + "\nFix it on the default branch, then ask again.")


@dataclass(frozen=True)
class Limits:
    """What the operator allows a repository's config: ceilings, and the images and models."""

    timeout_seconds: int
    max_turns: int
    budget_tokens: int | None  # None: no ceiling
    budget_usd: float | None
    images: tuple[str, ...]  # empty: the file may not name an image
    models: tuple[str, ...]
    default_image: str
    default_model: str
    agents: tuple[str, ...] = (DEFAULT_AGENT,)
    default_agent: str = DEFAULT_AGENT

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """Call only with settings whose `problems(agent=True)` is empty."""
        return cls(timeout_seconds=int(settings.timeout_seconds),
                   max_turns=settings.max_turn_count,
                   budget_tokens=settings.budget_token_ceiling,
                   budget_usd=settings.budget_usd_ceiling,
                   images=settings.allowed_image_names,
                   models=settings.allowed_model_names,
                   default_image=settings.sandbox_image,
                   default_model=settings.model,
                   agents=settings.enabled_agent_names,
                   default_agent=settings.agent)


@dataclass(frozen=True)
class EffectiveConfig:
    """The values a task runs with: the file's where it sets them, the operator's otherwise."""

    instructions: str  # "" when the file gives none
    image: str
    setup: tuple[str, ...]
    timeout_seconds: int
    max_turns: int
    model: str
    branch_prefix: str
    draft: bool
    budget_tokens: int | None  # None: no limit
    budget_usd: float | None
    limits: Limits
    agent: str = DEFAULT_AGENT
    # The agents a request runs side by side when it names none; empty: one agent, `agent`.
    compare: tuple[str, ...] = ()
    # The commands that say whether the repository's tests pass on a side-by-side member's
    # branch, run by the runner in a fresh sandbox after the agent finished (never by an agent).
    test: tuple[str, ...] = ()
    file_found: bool = False
    # The keys the file set; a budget's parts as "budget.tokens" and "budget.usd".
    set_by_file: frozenset[str] = frozenset()


def effective_config(file_text: str | None, settings: Settings) -> EffectiveConfig:
    """The config a task runs with, from the file's text (None: there is no file).

    Raises ConfigError naming every problem. `settings` must be valid for the agent."""
    limits = Limits.from_settings(settings)
    if file_text is None:
        return _effective(RepoConfigFile(), limits, file_found=False)
    size = len(file_text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise ConfigError([f"the file is {_kilobytes(size)}; this service reads files of at most "
                           f"{_kilobytes(MAX_FILE_BYTES)}, and settings need far less"])
    try:
        data = load_yaml(file_text)
    except YamlRefused as refused:
        raise ConfigError([_yaml_problem(refused, file_text)]) from None
    if data is None:  # empty, or only comments
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"the file holds {_kind(data)}; it must be a mapping of keys to "
                           "values, one per line, such as `timeout: 30m`"])
    try:
        file = RepoConfigFile.model_validate(data, context={"limits": limits})
    except ValidationError as invalid:
        raise ConfigError([_problem(error) for error in invalid.errors()]) from None
    return _effective(file, limits, file_found=True)


def asked_model_problem(model: str, limits: Limits) -> str | None:
    """Why a request may not work with the model it names (`--model NAME`), or None when it may:
    a request, like the file, chooses only among the models the operator allows."""
    if model in limits.models:
        return None
    return (f"`--model`: {_code(model)} is not a model this service allows; choose one of "
            f"{_listed(limits.models)} (ASYNC_CODE_ALLOWED_MODELS)")


def asked_agent_problem(agent: str, limits: Limits) -> str | None:
    """Why a task may not work with the agent it names, or None when it may. A task names one
    when its request said `--agent NAME`, or when it repeats a task that ran with one."""
    if agent in limits.agents:
        return None
    return (f"the agent {_code(agent)} is not one this service enables; choose one of "
            f"{_listed(limits.agents)} (ASYNC_CODE_AGENTS)")


def describe(config: EffectiveConfig, *, setup_network: bool) -> str:
    """Markdown for `help`: the repository's effective config, where each value comes from,
    and what the service allows. `setup_network`: whether the operator set a network for
    `setup` (ASYNC_CODE_SETUP_NETWORK); its name is not shown."""
    limits = config.limits
    network = ("on the network ASYNC_CODE_SETUP_NETWORK names, and the agent after it offline"
               if setup_network else "offline, as ASYNC_CODE_SETUP_NETWORK is not set")

    def source(key: str, limit: str | None = None) -> str:
        origin = "from the file" if key in config.set_by_file else "this service's default"
        return f"{origin}; the most allowed is {limit}" if limit else origin

    token_limit = _tokens(limits.budget_tokens) if limits.budget_tokens is not None else None
    usd_limit = _usd(limits.budget_usd) if limits.budget_usd is not None else None
    if config.file_found:
        intro = (f"**Effective config** of this repository: {_code(CONFIG_PATH)} on the default "
                 "branch, and this service's defaults for what it does not set.")
    else:
        intro = (f"**Effective config** of this repository: there is no {_code(CONFIG_PATH)} on "
                 "the default branch, so tasks run with this service's defaults.")
    lines = [
        intro, "",
        f"- `instructions`: {_instructions_summary(config.instructions)}"
        + (f" ({source('instructions')})" if config.instructions else ""),
        f"- `image`: {_code(config.image)} ({source('image')}; {_choices(limits.images, 'image')})",
        f"- `setup`: {_setup_summary(config.setup)} "
        + (f"({source('setup')}; setup runs {network})" if config.setup
           else f"(setup would run {network})"),
        f"- `timeout`: {_duration(config.timeout_seconds)} "
        f"({source('timeout', _duration(limits.timeout_seconds))})",
        f"- `max_turns`: {config.max_turns} ({source('max_turns', str(limits.max_turns))})",
        f"- `model`: {_code(config.model)} ({source('model')}; {_choices(limits.models, 'model')})",
        f"- `agent`: {_code(config.agent)} ({source('agent')}; {_choices(limits.agents, 'agent')})",
        "- `compare`: " + (f"{_listed(config.compare)} side by side on each request that "
                            f"names no agent ({source('compare')})" if config.compare else
                            "none: a request runs one agent unless it says `--agents A,B`"),
        f"- `test`: {_setup_summary(config.test)}"
        + (f" ({source('test')}; run on each side-by-side branch)" if config.test
           else " (side-by-side comparisons show no test result)"),
        f"- `branch_prefix`: {_code(config.branch_prefix)} ({source('branch_prefix')})",
        f"- `draft`: {'true' if config.draft else 'false'} ({source('draft')})",
        f"- `budget.tokens`: {_tokens(config.budget_tokens)} ({source('budget.tokens', token_limit)})",
        f"- `budget.usd`: {_usd(config.budget_usd)} ({source('budget.usd', usd_limit)})",
    ]
    return "\n".join(lines) + "\n"


# The schema. Validators that need the operator's limits read them from the validation context.

class _StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _has_a_value(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("no_value", "no value")
        return value


class Budget(_StrictModel):
    tokens: int | None = Field(None, ge=1, le=MAX_BUDGET_TOKENS)
    usd: float | None = Field(None, gt=0, allow_inf_nan=False)

    @field_validator("tokens")
    @classmethod
    def _within_token_ceiling(cls, tokens: int, info: ValidationInfo) -> int:
        ceiling = _limits(info).budget_tokens
        if ceiling is not None and tokens > ceiling:
            _refuse(f"`budget.tokens`: {_tokens(tokens)} is above this service's limit of "
                    f"{_tokens(ceiling)} (ASYNC_CODE_BUDGET_TOKENS); give at most that")
        return tokens

    @field_validator("usd")
    @classmethod
    def _within_usd_ceiling(cls, usd: float, info: ValidationInfo) -> float:
        ceiling = _limits(info).budget_usd
        if ceiling is not None and usd > ceiling:
            _refuse(f"`budget.usd`: {_usd(usd)} is above this service's limit of {_usd(ceiling)} "
                    "(ASYNC_CODE_BUDGET_USD); give at most that")
        return usd

    @model_validator(mode="after")
    def _sets_something(self) -> Budget:
        if self.tokens is None and self.usd is None:
            _refuse("`budget` is empty: give `tokens`, `usd` or both, or remove it")
        return self


SetupCommand = Annotated[str, Field(min_length=1, max_length=MAX_SETUP_COMMAND_CHARS)]


class RepoConfigFile(_StrictModel):
    """`.github/async-code.yml` as written; None is a key the file does not set.

    Validate with `context={"limits": Limits(...)}`: the ceilings are part of the schema."""

    instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS_CHARS)
    image: str | None = None
    setup: list[SetupCommand] | None = Field(None, max_length=MAX_SETUP_COMMANDS)
    timeout: int | None = None  # seconds
    max_turns: int | None = Field(None, ge=1)
    model: str | None = None
    agent: str | None = None
    compare: list[str] | None = None
    test: list[SetupCommand] | None = Field(None, max_length=MAX_SETUP_COMMANDS)
    branch_prefix: str | None = None
    draft: bool | None = None
    budget: Budget | None = None

    @field_validator("setup", "test", mode="before")
    @classmethod
    def _one_command_is_a_list_of_one(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration_in_seconds(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # an int is seconds; anything else fails the type check
        text = value.strip()
        if _SECONDS.fullmatch(text):
            return int(text)
        match = _DURATION.fullmatch(text)
        if not text or not match:
            _refuse(f"`timeout`: {_code(value)} is not a duration; write seconds (`1800`) or a "
                    "number with a unit: `90s`, `30m`, `1h`, `1h30m`")
        hours, minutes, seconds = (int(part or 0) for part in match.groups())
        return hours * 3600 + minutes * 60 + seconds

    @field_validator("timeout")
    @classmethod
    def _within_timeout_ceiling(cls, seconds: int, info: ValidationInfo) -> int:
        ceiling = _limits(info).timeout_seconds
        if seconds < MIN_TIMEOUT_SECONDS:
            _refuse(f"`timeout`: {_duration(seconds)} is too short; give at least "
                    f"{_duration(MIN_TIMEOUT_SECONDS)} (a plain number is seconds: write `30m` "
                    "for thirty minutes)")
        if seconds > ceiling:
            _refuse(f"`timeout`: {_duration(seconds)} is above this service's limit of "
                    f"{_duration(ceiling)} (ASYNC_CODE_TASK_TIMEOUT); give at most that")
        return seconds

    @field_validator("max_turns")
    @classmethod
    def _within_turn_ceiling(cls, turns: int, info: ValidationInfo) -> int:
        ceiling = _limits(info).max_turns
        if turns > ceiling:
            _refuse(f"`max_turns`: {turns} is above this service's limit of {ceiling} "
                    "(ASYNC_CODE_MAX_TURNS); give at most that")
        return turns

    @field_validator("image")
    @classmethod
    def _an_allowed_image(cls, image: str, info: ValidationInfo) -> str:
        limits = _limits(info)
        if not limits.images:
            _refuse("`image`: this service does not let a repository choose its image "
                    "(ASYNC_CODE_ALLOWED_IMAGES is not set); remove the key to use "
                    f"{_code(limits.default_image)}")
        if image not in limits.images:
            _refuse(f"`image`: {_code(image)} is not an image this service allows; choose one of "
                    f"{_listed(limits.images)} (ASYNC_CODE_ALLOWED_IMAGES)")
        return image

    @field_validator("model")
    @classmethod
    def _an_allowed_model(cls, model: str, info: ValidationInfo) -> str:
        limits = _limits(info)
        if model not in limits.models:
            _refuse(f"`model`: {_code(model)} is not a model this service allows; choose one of "
                    f"{_listed(limits.models)} (ASYNC_CODE_ALLOWED_MODELS)")
        return model

    @field_validator("agent")
    @classmethod
    def _an_enabled_agent(cls, agent: str, info: ValidationInfo) -> str:
        limits = _limits(info)
        if agent not in limits.agents:
            _refuse(f"`agent`: {_code(agent)} is not an agent this service enables; choose one of "
                    f"{_listed(limits.agents)} (ASYNC_CODE_AGENTS)")
        return agent

    @field_validator("compare")
    @classmethod
    def _enabled_agents_to_compare(cls, agents: list[str], info: ValidationInfo) -> list[str]:
        limits = _limits(info)
        for agent in agents:
            if agent not in limits.agents:
                _refuse(f"`compare`: {_code(agent)} is not an agent this service enables; "
                        f"choose among {_listed(limits.agents)} (ASYNC_CODE_AGENTS)")
        if len(set(agents)) != len(agents):
            _refuse("`compare` names an agent twice; name each once")
        if not MIN_COMPARED_AGENTS <= len(agents) <= MAX_COMPARED_AGENTS:
            _refuse(f"`compare` has {len(agents)} agent{'s' if len(agents) != 1 else ''}; give "
                    f"{MIN_COMPARED_AGENTS} to {MAX_COMPARED_AGENTS}, such as `[claude, codex]`, "
                    "or use `agent` for one")
        return agents

    @field_validator("branch_prefix")
    @classmethod
    def _a_branch_prefix(cls, prefix: str) -> str:
        if not prefix:
            _refuse(f"`branch_prefix` is empty; remove it to use {_code(DEFAULT_BRANCH_PREFIX)}")
        if len(prefix) > MAX_BRANCH_PREFIX_CHARS:
            _refuse(f"`branch_prefix` is {len(prefix):,} characters long; the most is "
                    f"{MAX_BRANCH_PREFIX_CHARS}")
        if not _BRANCH_PREFIX_CHARACTERS.fullmatch(prefix):
            _refuse(f"`branch_prefix`: {_code(prefix)} may hold only letters, digits and "
                    "`-` `_` `.` `/`, such as `bot/`")
        problem = branch_name_problem(prefix + BRANCH_SUFFIX_EXAMPLE)
        if problem:
            _refuse(f"`branch_prefix`: {_code(prefix)} cannot start a branch name: {problem} "
                    f"(as in {_code(prefix + BRANCH_SUFFIX_EXAMPLE)})")
        return prefix

    @field_validator("setup", "test")
    @classmethod
    def _runnable_commands(cls, commands: list[str], info: ValidationInfo) -> list[str]:
        for number, command in enumerate(commands, 1):
            if "\x00" in command:
                _refuse(f"`{info.field_name}` command {number} holds a NUL character, which no "
                        "command line can carry")
        return commands


def _refuse(message: str) -> None:
    # The message travels in the context, so braces in a quoted value are never a template.
    raise PydanticCustomError("refused", "{message}", {"message": message})


def _limits(info: ValidationInfo) -> Limits:
    return info.context["limits"]


def _effective(file: RepoConfigFile, limits: Limits, *, file_found: bool) -> EffectiveConfig:
    tokens = file.budget.tokens if file.budget else None
    usd = file.budget.usd if file.budget else None
    set_by_file = {key for key in KEYS if key != "budget" and getattr(file, key) is not None}
    set_by_file |= {name for name, value in (("budget.tokens", tokens), ("budget.usd", usd))
                    if value is not None}
    return EffectiveConfig(
        instructions=file.instructions or "",
        image=file.image or limits.default_image,
        setup=tuple(file.setup or ()),
        timeout_seconds=file.timeout if file.timeout is not None else limits.timeout_seconds,
        max_turns=file.max_turns if file.max_turns is not None else limits.max_turns,
        model=file.model or limits.default_model,
        agent=file.agent or limits.default_agent,
        compare=tuple(file.compare or ()),
        test=tuple(file.test or ()),
        branch_prefix=file.branch_prefix or DEFAULT_BRANCH_PREFIX,
        draft=bool(file.draft),
        budget_tokens=tokens if tokens is not None else limits.budget_tokens,
        budget_usd=usd if usd is not None else limits.budget_usd,
        limits=limits,
        file_found=file_found,
        set_by_file=frozenset(set_by_file),
    )


# Problems, in words a person can act on.

# What each key takes, for a value of the wrong type or out of range.
_EXPECTED = {
    "instructions": "text",
    "image": "an image name as text",
    "setup": "a shell command as text, or a list of them",
    "setup item": "a shell command as text",
    "timeout": "a duration: seconds (`1800`) or a number with a unit (`90s`, `30m`, `1h`, `1h30m`)",
    "max_turns": "a whole number of model turns, at least 1",
    "model": "a model name as text",
    "agent": "an agent's name as text",
    "compare": "a list of agents' names, such as `[claude, codex]`",
    "compare item": "an agent's name as text",
    "test": "a shell command as text, or a list of them",
    "test item": "a shell command as text",
    "branch_prefix": "text such as `bot/`",
    "draft": "`true` or `false`",
    "budget": "a mapping with `tokens`, `usd` or both",
    "budget.tokens": f"a whole number of tokens from 1 to {MAX_BUDGET_TOKENS:,}",
    "budget.usd": "an amount of US dollars above 0, such as `2.50`",
}


def _problem(error: dict[str, Any]) -> str:
    """One pydantic error as a sentence naming the key and what to write instead."""
    kind, location, value = error["type"], error["loc"], error.get("input")
    if kind == "refused":
        return error["ctx"]["message"]
    if kind == "extra_forbidden":
        return _unknown_key(location)
    if location[:1] in (("setup",), ("test",)) and len(location) == 2:
        key, number = location[0], int(location[1]) + 1
        if kind == "string_too_short":
            return f"`{key}` command {number} is empty"
        if kind == "string_too_long":
            return (f"`{key}` command {number} is {len(value):,} characters long; the most is "
                    f"{MAX_SETUP_COMMAND_CHARS:,}: put a long script in a file and run that")
        return f"`{key}` command {number}: give {_EXPECTED['setup item']}, not {_shown(value)}"
    if location[:1] == ("compare",) and len(location) == 2:
        return (f"`compare` item {int(location[1]) + 1}: give {_EXPECTED['compare item']}, "
                f"not {_shown(value)}")
    key = ".".join(str(part) for part in location)
    if kind == "no_value":
        return f"`{key}` has no value: give {_EXPECTED[key]}, or remove the key for the default"
    if kind == "string_too_long":
        return (f"`{key}` is {len(value):,} characters long; the most is "
                f"{error['ctx']['max_length']:,}")
    if kind == "too_long":
        return (f"`{key}` has {len(value):,} commands; the most is {MAX_SETUP_COMMANDS}: put them "
                "in a script and run that")
    return f"`{key}`: give {_EXPECTED.get(key, 'a valid value')}, not {_shown(value)}"


def _unknown_key(location: tuple[Any, ...]) -> str:
    known = BUDGET_KEYS if location[:1] == ("budget",) else KEYS
    written = str(location[-1])
    name = ".".join(str(part) for part in location[:-1]) + ("." if len(location) > 1 else "")
    guess = difflib.get_close_matches(written.lower().replace("-", "_"), known, n=1)
    hint = (f"did you mean `{guess[0]}`?" if guess
            else "the keys are " + ", ".join(f"`{key}`" for key in known))
    return f"{_code(name + written)} is not a key this file takes; {hint}"


def _yaml_problem(refused: YamlRefused, text: str) -> str:
    # The detail is mostly the parser's wording, with at most a character of the file's.
    reason = refused.reason.format(_code(refused.detail or "", limit=120))
    if refused.line is None:
        return reason
    lines = _YAML_LINE_BREAK.split(text)
    line = lines[refused.line - 1].strip() if refused.line <= len(lines) else ""
    return (f"line {refused.line}, column {refused.column}: {reason}"
            + (f" (the line reads {_code(line)})" if line else ""))


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "`true` or `false`"
    if isinstance(value, (int, float)):
        return "a number"
    return "text"


def _shown(value: Any) -> str:
    """A value the file gave, for a problem: short, and quoted when it is the file's text."""
    if value is None:
        return "no value"
    if isinstance(value, bool):
        return f"`{'true' if value else 'false'}`"
    if isinstance(value, (int, float)):
        return _code(_number(value))
    if isinstance(value, str):
        return f"the text {_code(value)}" if value else "empty text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "something else"


def _number(value: float) -> str:
    text = repr(value)
    return text if len(text) <= 20 else f"{value:.3g}"


def _code(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as a Markdown code span that shows it verbatim (cut short if long), so that no
    mention, link or Markdown in it takes effect."""
    if not text:
        return "(empty)"  # "``" is no code span, just two backticks
    return quoted(text, limit)


def _listed(names: tuple[str, ...]) -> str:
    shown = ", ".join(_code(name) for name in names[:MAX_CHOICES_SHOWN])
    more = len(names) - MAX_CHOICES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _choices(allowed: tuple[str, ...], noun: str) -> str:
    if not allowed:
        return f"the file may not choose an {noun}"
    return f"the file may choose {_listed(allowed)}"


def _duration(seconds: int) -> str:
    """1800 as 30m, 5400 as 1h30m, 45 as 45s."""
    if seconds <= 0:
        return f"{seconds}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (seconds, "s")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount) or "0s"


def _tokens(tokens: int | None) -> str:
    return "no limit" if tokens is None else f"{tokens:,} tokens"


def _usd(usd: float | None) -> str:
    if usd is None:
        return "no limit"
    cents = usd * 100
    return f"${usd:,.2f}" if math.isclose(cents, round(cents), abs_tol=1e-9) else f"${usd:,.6g}"


def _kilobytes(size: int) -> str:
    return f"{math.ceil(size / 1024):,} KB"


def _instructions_summary(text: str) -> str:
    if not text:
        return "none"
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    lines = len(text.splitlines())
    return (f"{lines} line{'s' if lines != 1 else ''}, {len(text):,} characters, starting "
            f"{_code(first_line)}")


def _setup_summary(commands: tuple[str, ...]) -> str:
    if not commands:
        return "none"
    shown = ", ".join(_code(" ".join(command.split())) for command in commands[:5])
    more = f" and {len(commands) - 5} more" if len(commands) > 5 else ""
    return f"{len(commands)} command{'s' if len(commands) != 1 else ''}: {shown}{more}"
