"""What prompt caching saves the built-in agent on a long task: a model, not a measurement.

Usage: .venv/bin/python bench/prompt_caching.py [--turns 20] [--per-turn]

Runs the real agent loop (runner/agent.py, through the anthropic SDK) twice on the same
scripted task against the tests' loopback Messages API: once as it is, with its cache
breakpoints, and once with every cache_control taken out of its requests on the way. Each
turn runs a shell command or views a file of a synthetic work tree; commands run in a
temporary directory, not a sandbox, because only what the model is sent matters here.

The usage comes from the fake, not from the API: it counts about four characters a token and
caches a prefix up to a breakpoint for the rest of the run, as the API's cache does within its
5-minute lifetime. Input is billed at the documented multipliers of the base input price:
cache writes 1.25x, cache reads 0.1x. The figures show how the breakpoints are placed and
what they can save, not what a real task will cost.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import anthropic  # noqa: E402

from app.budget import DEFAULT_PRICES, Usage, cost_usd, usage_of  # noqa: E402
from app.settings import DEFAULT_MODEL  # noqa: E402
from runner.agent import ClaudeAgent, task_request  # noqa: E402
from runner.files import FileEditor  # noqa: E402
from runner.sandbox import CommandResult  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic, Final, ToolCall, Turn  # noqa: E402

CACHE_WRITE, CACHE_READ = 1.25, 0.1  # times the base input price, 5-minute cache
API_KEY = "sk-ant-bench-prompt-caching"


class LocalRuntime:
    """Runs commands with sh in a directory: enough for the model's view of a task."""

    def __init__(self, root: Path):
        self.root = root

    def run(self, command: str, *, timeout: float, max_output: int = 30_000) -> CommandResult:
        done = subprocess.run(["sh", "-c", command], cwd=self.root, capture_output=True,
                              text=True, timeout=timeout)
        output = (done.stdout + done.stderr)[-max_output:]
        return CommandResult(exit_code=done.returncode, output=output, timed_out=False,
                             truncated=False)


class RecordingClient:
    """The SDK client, keeping each response's usage; `strip` takes the breakpoints out."""

    def __init__(self, client: anthropic.Anthropic, *, strip: bool):
        self.usages: list[Usage] = []
        self._client, self._strip = client, strip
        self.messages = self

    def create(self, **request: Any):
        if self._strip:
            request = _without_cache_control(request)
        response = self._client.messages.create(**request)
        self.usages.append(usage_of(response.usage))
        return response


def _without_cache_control(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_cache_control(item) for key, item in value.items()
                if key != "cache_control"}
    if isinstance(value, list):
        return [_without_cache_control(item) for item in value]
    return value


def write_tree(root: Path) -> list[str]:
    """A small package: eight modules of 60 to 200 lines, and their tests."""
    names = []
    for n in range(8):
        lines = [f'"""Module {n} of the widgets package."""', ""]
        for k in range(60 + 20 * n):
            lines.append(f"def widget_{n}_{k}(items, limit={k}):  # keeps at most {k} items")
        path = root / "widgets" / f"part_{n}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        names.append(f"widgets/part_{n}.py")
    (root / "tests").mkdir()
    (root / "tests" / "test_widgets.py").write_text("def test_empty():\n    assert True\n" * 30)
    return names


def script(turns: int, files: list[str]) -> list:
    steps = []
    for n in range(turns - 1):
        path = files[n % len(files)]
        if n % 4 == 0:
            call = ToolCall("edit_file", {"command": "view", "path": path})
        elif n % 4 == 1:
            call = ToolCall("bash", {"command": f"grep -n 'limit=1' {path} | head -40"})
        elif n % 4 == 2:
            call = ToolCall("bash", {"command": "ls -la widgets tests && wc -l widgets/*.py"})
        else:
            call = ToolCall("edit_file", {"command": "str_replace", "path": path,
                                          "old_str": f"def widget_{n % len(files)}_{n}(",
                                          "new_str": f"def widget_{n % len(files)}_{n}_capped("},
                            expect_error=False)
        steps.append(Turn([call], text=f"Step {n + 1}: looking at {path}."))
    steps.append(Final("Keep at most `limit` items in every widget\n\nThe widgets now cut "
                       "their lists at `limit`; the tests cover an empty list."))
    return steps


def run_task(turns: int, *, strip: bool) -> tuple[list[Usage], float | None]:
    request = task_request("Make every widget keep at most `limit` items.", number=7,
                           issue_title="Widgets grow without bound",
                           issue_body="When a list is long, each widget keeps all of it. " * 40)
    with FakeAnthropic(API_KEY) as fake, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fake.add_script("Make every widget keep", script(turns, write_tree(root)))
        with anthropic.Anthropic(api_key=API_KEY, base_url=fake.base_url, max_retries=0) as sdk:
            client = RecordingClient(sdk, strip=strip)
            agent = ClaudeAgent(client, model=DEFAULT_MODEL, max_turns=turns,  # type: ignore[arg-type]
                                price=DEFAULT_PRICES[DEFAULT_MODEL])
            result = agent.run(request=request, repo="acme/widgets", number=7,
                               runtime=LocalRuntime(root), editor=FileEditor(root),
                               deadline=time.monotonic() + 120)
        assert fake.failures == [], fake.failures
        assert result.stop == "answer" and result.turns == turns, (result.stop, result.turns)
        assert result.usage == sum(client.usages, Usage())
    return client.usages, result.cost_usd


def billed_input(usage: Usage) -> float:
    """Input tokens in units of the base input price."""
    return (usage.input_tokens + CACHE_WRITE * usage.cache_write_tokens
            + CACHE_READ * usage.cache_read_tokens)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--per-turn", action="store_true", help="print each model call's usage")
    args = parser.parse_args()

    cached, cached_cost = run_task(args.turns, strip=False)
    plain, plain_cost = run_task(args.turns, strip=True)
    if args.per_turn:
        print("turn | input | cache write | cache read | billed input (x base price)")
        for n, usage in enumerate(cached, 1):
            print(f"{n:4} | {usage.input_tokens:5} | {usage.cache_write_tokens:11} | "
                  f"{usage.cache_read_tokens:10} | {billed_input(usage):,.1f}")
    with_cache, without = sum(cached, Usage()), sum(plain, Usage())
    prompt = with_cache.input_tokens + with_cache.cache_write_tokens + with_cache.cache_read_tokens
    print(f"MODEL, not a measurement: usage from the loopback fake, {args.turns} turns, "
          f"{DEFAULT_MODEL} prices")
    print(f"prompt tokens sent: {prompt:,} with breakpoints, {without.input_tokens:,} without")
    print(f"with caching: {with_cache.input_tokens:,} input + {with_cache.cache_write_tokens:,} "
          f"written + {with_cache.cache_read_tokens:,} read")
    print(f"billed input tokens: {billed_input(with_cache):,.0f} with caching, "
          f"{billed_input(without):,.0f} without ({1 - billed_input(with_cache) / billed_input(without):.0%} less)")
    print(f"cost of the task, output included: ${cached_cost:.4f} with caching, "
          f"${plain_cost:.4f} without; output alone ${cost_usd(Usage(output_tokens=with_cache.output_tokens), DEFAULT_PRICES[DEFAULT_MODEL]):.4f}")


if __name__ == "__main__":
    main()
