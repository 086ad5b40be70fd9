"""Read what a mention asks for: a command, or work with options.

`find_instruction` gives the text after the mention. A text that is exactly a command word
controls the app; anything else is work to do, optionally preceded on its first line by
options such as `--base release --draft --model claude-haiku-4-5 --agent claude`. Options are read like shell words, so a quoted
value may hold spaces; the instruction itself is never read that way, so an apostrophe in
it means nothing.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from typing import NoReturn

from app.agents import agent_name_problem
from app.markdown import quoted

COMMANDS = ("cancel", "retry", "continue", "status", "help", "pick")
# Side by side: at least two agents, and few enough that one request cannot fill a runner.
MIN_COMPARED_AGENTS, MAX_COMPARED_AGENTS = 2, 4

# A valid request has at most seven option words ("--base", a branch, "--draft", "--model", a
# model, "--agent" or "--agents", its value); past a few more there is surely a problem, and
# argparse need not see thousands of words to name it.
MAX_OPTION_WORDS = 10
MAX_BRANCH_NAME_BYTES = 255  # a ref is a file, and file names stop at 255 bytes
# Model ids as Anthropic's API (`claude-haiku-4-5`), Bedrock (`anthropic.claude-haiku-4-5-
# 20251001-v1:0`, or an inference profile's ARN) and Vertex (`claude-haiku-4-5@20251001`) write
# them. Whether the service allows the one asked for is decided when the task runs.
MAX_MODEL_NAME_CHARS = 100
SHOWN_CHARS = 80  # of a person's text quoted back in a problem

# "--" and a letter: "-1", "-v" and "--> see below" are instruction text.
_OPTION_WORD = re.compile(r"--[^\W\d_]")
_OPTIONS_END = re.compile(r"--(?=[ \t\r]|$)")
_WORD_SEPARATORS = " \t\r"  # shlex's whitespace, less the newline the first line cannot hold
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t\r]*\n)+")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]*")
_BRANCH_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_VALUED_OPTIONS = ("--base", "--model", "--agent", "--agents")  # options whose value follows
# `pick 12` or `pick #12`: the one command that takes a word, a pull request's number.
_PICK = re.compile(r"pick[ \t]+#?([1-9][0-9]{0,8})", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class Request:
    """What a mention asks for. With `problem` set, nothing runs."""

    command: str | None = None  # one of COMMANDS, or None for a work request
    instruction: str = ""  # the work asked for, options removed; "" for a command
    base: str | None = None  # --base BRANCH
    draft: bool = False  # --draft
    model: str | None = None  # --model NAME
    agent: str | None = None  # --agent NAME
    agents: tuple[str, ...] | None = None  # --agents A,B: run side by side
    picked_pr: int | None = None  # `pick N`: the pull request picked
    problem: str | None = None  # why the request cannot be read, said to the person


class _Unreadable(Exception):
    """The options cannot be read; the message says why, to the person who wrote them."""


def read_request(text: str) -> Request:
    """The request in an instruction from `find_instruction`."""
    first_line, newline, following = text.partition("\n")
    try:
        words, instruction_start, more_words = _option_words(first_line)
        options = _parse_options(words)
        if more_words:
            raise _Unreadable("there are too many options")
    except _Unreadable as unreadable:
        return Request(problem=str(unreadable))
    instruction = _LEADING_BLANK_LINES.sub(
        "", first_line[instruction_start:].lstrip() + newline + following).rstrip()

    command, picked = _command(instruction)
    if command is not None:
        if words:
            return Request(problem=f"commands such as `{command}` take no options")
        if command == "pick" and picked is None:
            return Request(problem="`pick` needs the number of the pull request to keep, as in "
                                   "`pick 12`")
        return Request(command=command, picked_pr=picked)
    return Request(instruction=instruction, base=options.base, draft=options.draft,
                   model=options.model, agent=options.agent, agents=options.agents)


def grammar_help(slug: str, trigger_label: str) -> str:
    """Markdown that says how to ask: for the `help` command and for a request with a problem."""
    mention = f"@{slug}"
    return "\n".join([
        f"Start a line with {_code(mention)} and say what you want done:",
        "",
        "```",
        f"{mention} add retries to the fetch client",
        "```",
        "",
        "This works in comments on issues and pull requests, and in review comments on a pull "
        "request. Only people with write access to the repository can ask.",
        "",
        f"**Options** go before the instruction, on its first line: "
        f"{_code(mention + ' --base release --draft add retries')}",
        "- `--base BRANCH`: base the pull request on `BRANCH`, not the default branch "
        "(issues only).",
        "- `--draft`: open the pull request as a draft (issues only).",
        "- `--model NAME`: work with the model `NAME`, one of those this service allows.",
        "- `--agent NAME`: work with the agent `NAME`, one of those this service enables.",
        "- `--agents A,B`: run the agents `A` and `B` side by side (issues only), each on a "
        "draft pull request of its own, and compare them in one comment.",
        "",
        "Write `--` before an instruction that itself starts with `--`.",
        "",
        f"**Commands** are a mention and one word, nothing more: {_code(mention + ' status')}",
        "- `cancel`: stop the work asked for here.",
        "- `retry`: run the last request here again.",
        "- `continue`: carry on from the last work pushed here, with a fresh budget.",
        "- `status`: say how the work asked for here is going.",
        "- `help`: show this message.",
        "- `pick N`: after a side-by-side run, keep its pull request #N: it is marked ready for "
        "review, and the others are closed and their branches deleted.",
        "",
        f"**Labels**: adding the {_code(trigger_label)} label to an issue or pull request "
        "asks for work too.",
    ])


def branch_name_problem(name: str) -> str | None:
    """Why `name` is not a branch name git accepts, or None when it is one.

    The rules of `git check-ref-format --branch`, without running git.
    """
    if not name:
        return "it is empty"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_BRANCH_NAME_BYTES:
        return f"it is longer than {MAX_BRANCH_NAME_BYTES} bytes"
    forbidden = _BRANCH_FORBIDDEN.search(name)
    if forbidden:
        char = forbidden.group()
        if char == " ":
            return "it has a space"
        if char < " " or char == "\x7f":
            return "it has a control character"
        return f"it has {_code(char)}"
    if name in ("@", "HEAD"):
        return "git reserves that name"
    for sequence in ("..", "@{", "//"):
        if sequence in name:
            return f"it has {_code(sequence)}"
    if name.startswith(("-", "/")):
        return f"it starts with {_code(name[0])}"
    if name.endswith(("/", ".")):
        return f"it ends with {_code(name[-1])}"
    components = name.split("/")
    if any(component.startswith(".") for component in components):
        return "a part of it starts with `.`"
    if any(component.endswith(".lock") for component in components):
        return "a part of it ends with `.lock`"
    return None


def _option_words(first_line: str) -> tuple[list[str], int, bool]:
    """The unquoted option words that open the line, where the instruction starts, and
    whether more option words follow than MAX_OPTION_WORDS.

    Only words that are options, or the value of a valued option, go through shlex: the
    instruction after them may hold any quotes at all.
    """
    lexer = shlex.shlex(first_line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # "#12" is an issue, not a comment
    words: list[str] = []
    position = 0
    value_next = False
    while True:
        start = _skip_separators(first_line, position)
        if not value_next:
            if _OPTIONS_END.match(first_line, start):
                return words, start + len("--"), False
            if not _OPTION_WORD.match(first_line, start):
                return words, start, False
        if len(words) == MAX_OPTION_WORDS:
            return words, start, True
        try:
            word = lexer.get_token()
        except ValueError as error:
            if "quotation" in str(error):
                raise _Unreadable("the options have a quote that is not closed") from None
            raise _Unreadable("the options end with a `\\` that escapes nothing") from None
        if word is None:  # the line ended where an option's value belonged
            return words, len(first_line), False
        words.append(word)
        # The lexer has read the word and the one separator after it.
        position = lexer.instream.tell()
        value_next = not value_next and word in _VALUED_OPTIONS


def _skip_separators(line: str, position: int) -> int:
    while position < len(line) and line[position] in _WORD_SEPARATORS:
        position += 1
    return position


@dataclass(frozen=True)
class _Options:
    base: str | None = None
    draft: bool = False
    model: str | None = None
    agent: str | None = None
    agents: tuple[str, ...] | None = None


# Each valued option: what its value is, and why a given value cannot be one.
_VALUE_CHECKS = {
    "base": ("a branch name", lambda value: branch_name_problem(value)),
    "model": ("a model name", lambda value: model_name_problem(value)),
    "agent": ("an agent's name", lambda value: agent_name_problem(value)),
    "agents": ("a comma-separated list of agents, such as `claude,codex`",
               lambda value: agents_list_problem(value)),
}


def _parse_options(words: list[str]) -> _Options:
    """The options that option words give."""
    if not words:
        return _Options()
    try:
        options, unknown = _parser().parse_known_args(words)
    except argparse.ArgumentError as error:
        if error.argument_name == "--draft":
            raise _Unreadable("`--draft` takes no value") from None
        name = (error.argument_name or "").removeprefix("--")
        if name in _VALUE_CHECKS:
            raise _Unreadable(f"`--{name}` needs {_VALUE_CHECKS[name][0]}") from None
        raise _Unreadable(f"cannot read the options: {error.message}") from None
    if unknown:
        name = unknown[0].split("=", 1)[0]
        raise _Unreadable(f"unknown option {_code(name)}")
    for name, (what, problem_of) in _VALUE_CHECKS.items():
        value = getattr(options, name)
        # argparse reads `--base=--` as a list: a value that is no single word is none.
        if value == "" or not (value is None or isinstance(value, str)):
            raise _Unreadable(f"`--{name}` needs {what}")
        if value is not None and (problem := problem_of(value)):
            raise _Unreadable(f"{_code(value)} is not {what}: {problem}")
    if options.agent is not None and options.agents is not None:
        raise _Unreadable("give `--agent` for one agent or `--agents` for several side by side, "
                          "not both")
    agents = tuple(options.agents.split(",")) if options.agents is not None else None
    return _Options(base=options.base, draft=bool(options.draft), model=options.model,
                    agent=options.agent, agents=agents)


def agents_list_problem(value: str) -> str | None:
    """Why `value` cannot be the agents of `--agents` (names, comma-separated, no spaces), or
    None when it can be. Whether the service enables them is decided when the task runs."""
    names = value.split(",")
    for name in names:
        if not name:
            return "a name in it is empty"
        if problem := agent_name_problem(name):
            return f"{_code(name)}: {problem}"
    if len(set(names)) != len(names):
        return "it names an agent twice"
    if not MIN_COMPARED_AGENTS <= len(names) <= MAX_COMPARED_AGENTS:
        return (f"side by side takes {MIN_COMPARED_AGENTS} to {MAX_COMPARED_AGENTS} agents; "
                "for one, give `--agent NAME`")
    return None


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot be a model id, or None when it can be one."""
    if len(name) > MAX_MODEL_NAME_CHARS:
        return f"it is longer than {MAX_MODEL_NAME_CHARS} characters"
    if not _MODEL_NAME.fullmatch(name):
        return ("it may hold only letters, digits and `.` `-` `_` `:` `/` `@`, and starts "
                "with a letter or digit")
    return None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # The default prints usage and exits the process.
        raise _Unreadable(f"cannot read the options: {message}")


class _Once(argparse.Action):
    """Store an option's value, or its `const` for a flag, and refuse a second one."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is not None:
            raise _Unreadable(f"{_code(option_string)} is given more than once")
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def _parser() -> _Parser:
    parser = _Parser(prog="@mention", add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--base", action=_Once)
    parser.add_argument("--draft", action=_Once, nargs=0, const=True)
    parser.add_argument("--model", action=_Once)
    parser.add_argument("--agent", action=_Once)
    parser.add_argument("--agents", action=_Once)
    return parser


def _command(instruction: str) -> tuple[str | None, int | None]:
    """The command an instruction is, if it is one, and the number `pick` names."""
    word = instruction.strip()
    # ASCII case only: lower() or casefold() would read "ſtatus" (long s) as "status".
    if word.isascii() and word.lower() in COMMANDS:
        return word.lower(), None
    if picked := _PICK.fullmatch(word):
        return "pick", int(picked.group(1))
    return None, None


def _code(text: str) -> str:
    """`text` as a Markdown code span that shows it verbatim, cut short if long."""
    return quoted(text, SHOWN_CHARS)
