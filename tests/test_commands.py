"""The request grammar: a control command, or work with its options, read from a mention."""


import pytest

from app import commands
from app.commands import COMMANDS, Request, branch_name_problem, grammar_help, read_request
from app.payload import MAX_TEXT_CHARS
from app.triggers import find_instruction
from tests.github_rendering import findings, render

SLUG = "async-code"


def work(instruction, *, base=None, draft=False, model=None, agent=None, agents=None):
    return Request(instruction=instruction, base=base, draft=draft, model=model, agent=agent,
                   agents=agents)


def problem(message):
    return Request(problem=message)


COMMAND_CASES = [
    *[pytest.param(name, Request(command=name), id=name) for name in COMMANDS if name != "pick"],
    pytest.param("pick 12", Request(command="pick", picked_pr=12), id="pick"),
    pytest.param("pick #7", Request(command="pick", picked_pr=7), id="pick-with-hash"),
    pytest.param(" PICK\t3 ", Request(command="pick", picked_pr=3), id="pick-upper-case-tab"),
    pytest.param("-- pick 5", Request(command="pick", picked_pr=5), id="pick-after-end-of-options"),
    pytest.param("Cancel", Request(command="cancel"), id="capitalised"),
    pytest.param(" STATUS ", Request(command="status"), id="upper-case-with-spaces"),
    pytest.param("ReTrY", Request(command="retry"), id="mixed-case"),
    pytest.param("help\n\n", Request(command="help"), id="trailing-blank-lines"),
    pytest.param("\thelp", Request(command="help"), id="leading-tab"),
    pytest.param("-- retry", Request(command="retry"), id="after-end-of-options"),
]


@pytest.mark.parametrize(("text", "request_"), COMMAND_CASES)
def test_commands(text, request_):
    assert read_request(text) == request_


NOT_COMMANDS = [
    # "ſ" (long s) is "s" to casefold() and upper(), and re.IGNORECASE matches it too.
    pytest.param("ſtatus", id="long-s-first"),
    pytest.param("STATUſ", id="long-s-last"),
    pytest.param("ｈｅｌｐ", id="fullwidth-letters"),
    pytest.param("\u0441ancel", id="cyrillic-es"),
    pytest.param("help me fix the login", id="command-word-then-more"),
    pytest.param("status.", id="punctuation"),
    pytest.param("cancel the cron job", id="cancel-something-else"),
    pytest.param("retry\n\nplease", id="more-on-a-later-line"),
    pytest.param("helpful error messages", id="command-as-prefix"),
    pytest.param("re try", id="split-word"),
    # `pick` takes a pull request's number and nothing more.
    pytest.param("pick 0", id="pick-zero"),
    pytest.param("pick 12 please", id="pick-then-more"),
    pytest.param("pick the fastest one", id="pick-a-word"),
    pytest.param("pick 1234567890", id="pick-ten-digits"),
    pytest.param("pick １２", id="pick-fullwidth-digits"),
    pytest.param("pick ١٢", id="pick-arabic-indic-digits"),
    pytest.param("pick 12\n\nthanks", id="pick-then-a-line"),
]


@pytest.mark.parametrize("text", NOT_COMMANDS)
def test_not_commands_are_work(text):
    assert read_request(text) == work(text)


OPTIONS = [
    pytest.param("--base release fix it", work("fix it", base="release"), id="base"),
    pytest.param("--agents claude,codex fix it", work("fix it", agents=("claude", "codex")),
                 id="agents"),
    pytest.param("--agents=codex,claude-code,claude fix", work(
        "fix", agents=("codex", "claude-code", "claude")), id="agents-equals-three"),
    pytest.param("--base=release fix it", work("fix it", base="release"), id="base-equals"),
    pytest.param("--base\t release\t fix it", work("fix it", base="release"), id="tabs-between"),
    pytest.param('--base "release-1.x" fix', work("fix", base="release-1.x"), id="double-quoted"),
    pytest.param("--base='release/1.x' fix", work("fix", base="release/1.x"),
                 id="single-quoted-equals"),
    pytest.param("--base feature/résumé fix", work("fix", base="feature/résumé"),
                 id="non-ascii-branch"),
    pytest.param("--base -1 fix", problem("`-1` is not a branch name: it starts with `-`"),
                 id="negative-number-value"),
    pytest.param("--draft fix it", work("fix it", draft=True), id="draft"),
    pytest.param("--base dev --draft fix it", work("fix it", base="dev", draft=True),
                 id="base-then-draft"),
    pytest.param("--draft --base=dev fix it", work("fix it", base="dev", draft=True),
                 id="draft-then-base"),
    pytest.param("-- --draft is broken", work("--draft is broken"), id="double-dash-ends-options"),
    pytest.param("--draft -- --base is ignored", work("--base is ignored", draft=True),
                 id="double-dash-after-options"),
    pytest.param("--draft --", work("", draft=True), id="double-dash-then-nothing"),
    pytest.param("-1 is returned on error, fix it", work("-1 is returned on error, fix it"),
                 id="single-dash-number"),
    pytest.param("-v should print the version", work("-v should print the version"),
                 id="single-dash-letter"),
    pytest.param("--> see the trace below", work("--> see the trace below"),
                 id="double-dash-not-letter"),
    pytest.param("--draft", work("", draft=True), id="options-without-instruction"),
    pytest.param("--base main   ", work("", base="main"), id="base-without-instruction"),
    pytest.param("--draft\nfix it\n  carefully", work("fix it\n  carefully", draft=True),
                 id="instruction-on-next-lines"),
    pytest.param("--draft\n\n    indented\nmore", work("    indented\nmore", draft=True),
                 id="next-lines-keep-their-indent"),
    pytest.param("fix --draft handling", work("fix --draft handling"), id="option-after-words"),
    pytest.param("--base=fix#12 go", work("go", base="fix#12"), id="hash-is-not-a-comment"),
    pytest.param("--draft #12 is back", work("#12 is back", draft=True), id="hash-in-instruction"),
    pytest.param("--model claude-haiku-4-5 add retries",
                 work("add retries", model="claude-haiku-4-5"), id="model"),
    pytest.param("--model=claude-haiku-4-5 add retries",
                 work("add retries", model="claude-haiku-4-5"), id="model-equals"),
    pytest.param("--model 'claude-haiku-4-5' fix", work("fix", model="claude-haiku-4-5"),
                 id="model-quoted"),
    pytest.param("--base dev --draft --model claude-haiku-4-5 fix",
                 work("fix", base="dev", draft=True, model="claude-haiku-4-5"), id="all-options"),
    pytest.param("--model claude-haiku-4-5 --base dev fix",
                 work("fix", base="dev", model="claude-haiku-4-5"), id="model-then-base"),
    pytest.param("--model claude-haiku-4-5\nfix it", work("fix it", model="claude-haiku-4-5"),
                 id="model-then-instruction-on-next-line"),
    pytest.param("--model claude-haiku-4-5", work("", model="claude-haiku-4-5"),
                 id="model-without-instruction"),
    pytest.param("--model claude-3-5-haiku-20241022 fix",
                 work("fix", model="claude-3-5-haiku-20241022"), id="model-dated"),
    pytest.param("--model anthropic.claude-haiku-4-5-20251001-v1:0 fix",
                 work("fix", model="anthropic.claude-haiku-4-5-20251001-v1:0"),
                 id="model-bedrock"),
    pytest.param("--model claude-haiku-4-5@20251001 fix",
                 work("fix", model="claude-haiku-4-5@20251001"), id="model-vertex"),
    pytest.param("--model " + "m" * 100 + " fix", work("fix", model="m" * 100),
                 id="model-longest"),
    pytest.param("fix --model handling", work("fix --model handling"), id="model-after-words"),
    pytest.param("--agent claude add retries", work("add retries", agent="claude"), id="agent"),
    pytest.param("--agent=claude-code fix", work("fix", agent="claude-code"), id="agent-equals"),
    # Whether the service enables it is decided when the task runs, like a model.
    pytest.param("--agent someday fix", work("fix", agent="someday"), id="agent-unknown-name"),
    pytest.param("--base dev --draft --model claude-haiku-4-5 --agent codex fix",
                 work("fix", base="dev", draft=True, model="claude-haiku-4-5", agent="codex"),
                 id="every-option"),
    pytest.param("--agent " + "a" * 40 + " fix", work("fix", agent="a" * 40), id="agent-longest"),
]


@pytest.mark.parametrize(("text", "request_"), OPTIONS)
def test_options(text, request_):
    assert read_request(text) == request_


PROBLEMS = [
    pytest.param("--draft --draft fix", "`--draft` is given more than once", id="draft-twice"),
    pytest.param("--base a --base=b fix", "`--base` is given more than once", id="base-twice"),
    pytest.param("--foo fix", "unknown option `--foo`", id="unknown"),
    pytest.param("--foo=bar fix", "unknown option `--foo`", id="unknown-with-value"),
    pytest.param("--bas main fix", "unknown option `--bas`", id="no-abbreviations"),
    pytest.param("--Draft fix", "unknown option `--Draft`", id="case-matters"),
    pytest.param("--base", "`--base` needs a branch name", id="base-at-end"),
    pytest.param("--base\nmain fix", "`--base` needs a branch name", id="base-value-on-next-line"),
    pytest.param("--base --draft fix", "`--base` needs a branch name", id="base-then-option"),
    pytest.param("--base= fix", "`--base` needs a branch name", id="base-equals-nothing"),
    pytest.param('--base "" fix', "`--base` needs a branch name", id="base-empty-quotes"),
    pytest.param("--draft=yes fix", "`--draft` takes no value", id="draft-with-value"),
    pytest.param("--draft= fix", "`--draft` takes no value", id="draft-with-empty-value"),
    pytest.param('--base "release fix it', "the options have a quote that is not closed",
                 id="unterminated-double-quote"),
    pytest.param("--base='x fix", "the options have a quote that is not closed",
                 id="unterminated-single-quote"),
    pytest.param("--base main\\", "the options end with a `\\` that escapes nothing",
                 id="trailing-backslash"),
    pytest.param('--base "release 1.x" fix', "`release 1.x` is not a branch name: it has a space",
                 id="quoted-base-with-space"),
    pytest.param("--base a..b fix", "`a..b` is not a branch name: it has `..`", id="invalid-base"),
    pytest.param("--model a --model=b fix", "`--model` is given more than once",
                 id="model-twice"),
    pytest.param("--model", "`--model` needs a model name", id="model-at-end"),
    pytest.param("--model\nclaude-haiku-4-5 fix", "`--model` needs a model name",
                 id="model-value-on-next-line"),
    pytest.param("--model --draft fix", "`--model` needs a model name", id="model-then-option"),
    pytest.param("--model= fix", "`--model` needs a model name", id="model-equals-nothing"),
    pytest.param('--model "" fix', "`--model` needs a model name", id="model-empty-quotes"),
    pytest.param("--mod claude-haiku-4-5 fix", "unknown option `--mod`", id="model-abbreviated"),
    pytest.param('--model "claude haiku" fix', "`claude haiku` is not a model name: it may hold "
                 "only letters, digits and `.` `-` `_` `:` `/` `@`, and starts with a letter or "
                 "digit", id="model-with-space"),
    pytest.param("--model -x fix", "`--model` needs a model name", id="model-then-dash-word"),
    pytest.param("--model=-x fix", "`-x` is not a model name: it may hold only letters, digits "
                 "and `.` `-` `_` `:` `/` `@`, and starts with a letter or digit",
                 id="model-leading-dash"),
    pytest.param("--model claude`x fix", "``claude`x`` is not a model name: it may hold only "
                 "letters, digits and `.` `-` `_` `:` `/` `@`, and starts with a letter or digit",
                 id="model-backtick"),
    pytest.param("--model claude-haiku-４ fix", "`claude-haiku-４` is not a model name: it may "
                 "hold only letters, digits and `.` `-` `_` `:` `/` `@`, and starts with a letter "
                 "or digit", id="model-fullwidth-digit"),
    pytest.param("--model " + "m" * 101 + " fix",
                 f"`{'m' * 79}…` is not a model name: it is longer than 100 characters",
                 id="model-too-long"),
    pytest.param("--model claude-haiku-4-5 retry", "commands such as `retry` take no options",
                 id="model-command"),
    pytest.param("--draft retry", "commands such as `retry` take no options", id="draft-command"),
    pytest.param("--agent claude retry", "commands such as `retry` take no options",
                 id="agent-command"),
    pytest.param("--agent", "`--agent` needs an agent's name", id="agent-at-end"),
    pytest.param("--agent= fix", "`--agent` needs an agent's name", id="agent-equals-nothing"),
    pytest.param("--agent --draft fix", "`--agent` needs an agent's name", id="agent-then-option"),
    pytest.param("--agent a --agent b fix", "`--agent` is given more than once", id="agent-twice"),
    pytest.param("--agent Claude fix", "`Claude` is not an agent's name: it may hold only "
                 "lower-case letters, digits and `-`, and starts with a letter", id="agent-upper"),
    pytest.param("--agent ../codex fix", "`../codex` is not an agent's name: it may hold only "
                 "lower-case letters, digits and `-`, and starts with a letter", id="agent-path"),
    pytest.param("--agent " + "a" * 41 + " fix",
                 "`" + "a" * 41 + "` is not an agent's name: it is longer than 40 characters",
                 id="agent-too-long"),
    pytest.param("--agents claude fix", "`claude` is not a comma-separated list of agents, such "
                 "as `claude,codex`: side by side takes 2 to 4 agents; for one, give "
                 "`--agent NAME`", id="agents-only-one"),
    pytest.param("--agents a,b,c,d,e fix", "`a,b,c,d,e` is not a comma-separated list of agents, "
                 "such as `claude,codex`: side by side takes 2 to 4 agents; for one, give "
                 "`--agent NAME`", id="agents-too-many"),
    pytest.param("--agents claude,,codex fix", "`claude,,codex` is not a comma-separated list of "
                 "agents, such as `claude,codex`: a name in it is empty", id="agents-empty-name"),
    pytest.param("--agents claude,claude fix", "`claude,claude` is not a comma-separated list of "
                 "agents, such as `claude,codex`: it names an agent twice", id="agents-twice"),
    pytest.param("--agents claude,Codex fix", "`claude,Codex` is not a comma-separated list of "
                 "agents, such as `claude,codex`: `Codex`: it may hold only lower-case letters, "
                 "digits and `-`, and starts with a letter", id="agents-bad-name"),
    pytest.param("--agents", "`--agents` needs a comma-separated list of agents, such as "
                 "`claude,codex`", id="agents-no-value"),
    pytest.param("--agent claude --agents claude,codex fix", "give `--agent` for one agent or "
                 "`--agents` for several side by side, not both", id="agent-and-agents"),
    pytest.param("--agents claude,codex --agents codex,claude fix",
                 "`--agents` is given more than once", id="agents-twice-given"),
    pytest.param("--agents=-- fix", "`--agents` needs a comma-separated list of agents, such as "
                 "`claude,codex`", id="agents-double-dash"),
    pytest.param("--base=-- fix", "`--base` needs a branch name", id="base-double-dash"),
    pytest.param("--model=-- fix", "`--model` needs a model name", id="model-double-dash"),
    pytest.param("pick", "`pick` needs the number of the pull request to keep, as in `pick 12`",
                 id="pick-without-number"),
    pytest.param("--agents claude,codex pick 3", "commands such as `pick` take no options",
                 id="pick-with-options"),
    pytest.param("--base main STATUS", "commands such as `status` take no options",
                 id="base-command"),
    pytest.param("--draft\nhelp", "commands such as `help` take no options",
                 id="command-on-next-line"),
    pytest.param("--foo retry", "unknown option `--foo`", id="option-problem-first"),
    pytest.param("--fo`o fix", "unknown option ``--fo`o``", id="backtick-in-shown-name"),
    pytest.param("--" + "x" * 200, f"unknown option `--{'x' * 77}…`", id="long-name-cut"),
    pytest.param("--draft " * 9 + "fix", "`--draft` is given more than once", id="many-repeats"),
    pytest.param("--a " * 20 + "fix", "unknown option `--a`", id="many-unknown"),
]


@pytest.mark.parametrize(("text", "message"), PROBLEMS)
def test_problems(text, message):
    assert read_request(text) == problem(message)


INSTRUCTIONS_KEPT_VERBATIM = [
    pytest.param("don't break the build", "don't break the build", id="apostrophe"),
    pytest.param('--draft don\'t "quote me', 'don\'t "quote me', id="unbalanced-after-options"),
    pytest.param('say "hi', 'say "hi', id="unbalanced-double-quote"),
    pytest.param("--base main it's `x`\\", "it's `x`\\", id="backslash-at-end-of-instruction"),
    pytest.param("  fix  it   ", "fix  it", id="outer-whitespace-only"),
    pytest.param("fix this:\n  - one\n\t- two\n", "fix this:\n  - one\n\t- two",
                 id="later-lines-keep-indentation"),
    pytest.param(
        "--draft fix this:\n```sh\n--base 'x\nretry\n```\nthanks",
        "fix this:\n```sh\n--base 'x\nretry\n```\nthanks",
        id="code-fence-after-first-line",
    ),
    pytest.param("fix\r\nit", "fix\r\nit", id="carriage-returns-kept"),
]


@pytest.mark.parametrize(("text", "instruction"), INSTRUCTIONS_KEPT_VERBATIM)
def test_instruction_kept_verbatim(text, instruction):
    assert read_request(text).instruction == instruction


INVALID_BRANCH_NAMES = [
    pytest.param("", "it is empty", id="empty"),
    pytest.param("a" * 256, "it is longer than 255 bytes", id="too-long"),
    pytest.param("é" * 128, "it is longer than 255 bytes", id="too-long-in-utf-8"),
    pytest.param("a b", "it has a space", id="space"),
    pytest.param("a\tb", "it has a control character", id="tab"),
    pytest.param("a\x7fb", "it has a control character", id="delete"),
    *[pytest.param(f"a{char}b", f"it has `{char}`", id=f"char-{char}") for char in "~^:?*["],
    pytest.param("a\\b", "it has `\\`", id="backslash"),
    pytest.param("a..b", "it has `..`", id="two-dots"),
    pytest.param("a@{b", "it has `@{`", id="at-brace"),
    pytest.param("@", "git reserves that name", id="at"),
    pytest.param("HEAD", "git reserves that name", id="head"),
    pytest.param("-x", "it starts with `-`", id="leading-dash"),
    pytest.param("/x", "it starts with `/`", id="leading-slash"),
    pytest.param(".x", "a part of it starts with `.`", id="leading-dot"),
    pytest.param("a/.b", "a part of it starts with `.`", id="component-leading-dot"),
    pytest.param("x.lock", "a part of it ends with `.lock`", id="lock"),
    pytest.param("a.lock/b", "a part of it ends with `.lock`", id="component-lock"),
    pytest.param("x/", "it ends with `/`", id="trailing-slash"),
    pytest.param("x.", "it ends with `.`", id="trailing-dot"),
    pytest.param("a//b", "it has `//`", id="double-slash"),
]


@pytest.mark.parametrize(("name", "reason"), INVALID_BRANCH_NAMES)
def test_invalid_branch_names(name, reason):
    assert branch_name_problem(name) == reason


@pytest.mark.parametrize("name", [
    "main", "release/1.x", "feature/résumé", "a" * 255, "x.lock.y", "a@b", "a-", "a/b-c_d",
    "v1.2", "@@", "head", "a`b",
])
def test_valid_branch_names(name):
    assert branch_name_problem(name) is None
    assert read_request(f"--base={name} fix") == work("fix", base=name)


LONG_INPUTS = [
    pytest.param("--base main " + "x" * (MAX_TEXT_CHARS - 12), work("x" * (MAX_TEXT_CHARS - 12),
                 base="main"), id="long-first-line"),
    pytest.param("--draft fix\n" + "y\n" * ((MAX_TEXT_CHARS - 12) // 2),
                 work("fix\n" + "y\n" * ((MAX_TEXT_CHARS - 12) // 2 - 1) + "y", draft=True),
                 id="many-lines"),
    pytest.param('--base "' + "'" * (MAX_TEXT_CHARS - 8),
                 problem("the options have a quote that is not closed"), id="long-open-quote"),
    pytest.param("--draft " * (MAX_TEXT_CHARS // 8), problem("`--draft` is given more than once"),
                 id="long-run-of-options"),
    # argparse takes seconds over thousands of unknown options; only the first few are read.
    pytest.param("--a " * (MAX_TEXT_CHARS // 4), problem("unknown option `--a`"),
                 id="long-run-of-unknown-options"),
    pytest.param("--base " + "a" * (MAX_TEXT_CHARS - 7),
                 problem(f"`{'a' * 79}…` is not a branch name: it is longer than 255 bytes"),
                 id="long-branch"),
]


@pytest.mark.parametrize(("text", "request_"), LONG_INPUTS)
def test_long_input(text, request_, monkeypatch):
    assert len(text) >= MAX_TEXT_CHARS - 8
    # The work is bounded by what reaches argparse, never more than a few words.
    seen = []
    real_parse = commands._parse_options
    monkeypatch.setattr(commands, "_parse_options", lambda words: seen.append(len(words)) or real_parse(words))
    assert read_request(text) == request_
    assert all(count <= commands.MAX_OPTION_WORDS for count in seen)


COMMENTS = [
    pytest.param("@async-code cancel", Request(command="cancel"), id="command"),
    pytest.param("@async-code: Status", Request(command="status"), id="command-after-colon"),
    pytest.param("Thanks!\n\n@async-code --base release --draft add retries\nwith backoff",
                 work("add retries\nwith backoff", base="release", draft=True),
                 id="options-after-prose"),
    pytest.param("@async-code\n--draft fix the login\n    keep the API",
                 work("fix the login\n    keep the API", draft=True),
                 id="options-on-line-below-mention"),
    pytest.param("@async-code help me fix the login", work("help me fix the login"),
                 id="help-then-more"),
    pytest.param("@async-code --base main retry",
                 problem("commands such as `retry` take no options"), id="options-with-command"),
    pytest.param("@async-code --draft", work("", draft=True), id="options-only"),
    pytest.param("@async-code", work(""), id="bare-mention"),
]


@pytest.mark.parametrize(("body", "request_"), COMMENTS)
def test_comment_to_request(body, request_):
    assert read_request(find_instruction(body, SLUG)) == request_


@pytest.mark.parametrize("body", [
    pytest.param("To stop it, write:\n```\n@async-code cancel\n```", id="fenced-command"),
    pytest.param("> @async-code retry", id="quoted-command"),
    pytest.param("Say `@async-code status` to see progress", id="command-in-code-span"),
])
def test_shown_commands_are_not_requests(body):
    assert find_instruction(body, SLUG) is None


def test_grammar_help():
    text = grammar_help("async-code", "ai-task")
    for part in ("`@async-code`", "`--base BRANCH`", "issues only", "`--draft`",
                 "`--model NAME`", "`ai-task`",
                 "review comments", "write access", "`--agents A,B`", "`pick N`",
                 *(f"`{name}`" for name in COMMANDS if name != "pick")):
        assert part in text
    # Every example of asking is in code, so the reply itself mentions nobody.
    assert findings(render(text)) == []


@pytest.mark.parametrize("text", [
    "--x`@acme/team fix",
    "--x``@acme/team` fix",
    "--x`` fix",
    "--base=`@acme/team`.. fix",
    "--base='@acme/team and more' fix",
    "--x" + "`" * 100 + "@acme",
    "--model @acme/team fix",
    "--model `@acme/team` fix",
])
def test_problems_quote_the_text_inertly(text):
    message = read_request(text).problem
    assert message is not None
    assert findings(render(message)) == []
