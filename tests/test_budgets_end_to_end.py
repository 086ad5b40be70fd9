"""Budgets end to end on the real stack: at 80 % the agent is told to wrap up, at 100 % it is
stopped, its work is committed, pushed and reported, and `continue` carries on with a fresh
budget on the same branch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, wait_until
from tests.fakes.anthropic import Final, ToolCall, Turn
from tests.test_checks_end_to_end import app_runs
from tests.test_end_to_end import INSTRUCTION, NEW_MAIN, OLD_MAIN
from tests.test_repo_config_end_to_end import with_config
from tests.test_requests_end_to_end import (FRIENDLY_NEW, FRIENDLY_OLD, bot_comments, first_message,
                                            git, people_pull)

LAST_WORDS = "Next I would run the tests."


def used(tokens_in: int, tokens_out: int, cache_write: int = 0, cache_read: int = 0) -> dict:
    return {"input_tokens": tokens_in, "output_tokens": tokens_out,
            "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read}


def edit(path: str, old: str, new: str, usage: dict, text: str = "") -> Turn:
    return Turn([ToolCall("edit_file", {"command": "str_replace", "path": path, "old_str": old,
                                        "new_str": new}, expect_error=False)], text=text, usage=usage)


def wrap_up_notes(model) -> list[str]:
    return [block["text"] for request in model.requests
            for message in request["json"]["messages"] if isinstance(message["content"], list)
            for block in message["content"] if block.get("type") == "text"
            and "[async-code]" in block["text"]]


def test_a_budget_stop_is_pushed_and_reported_and_continue_resumes_with_a_fresh_one(
        service_factory, github, model):
    # The operator's ceiling is 5,000 tokens; the repository lowers it to 1,000.
    service = service_factory(ASYNC_CODE_BUDGET_TOKENS="5000").start()
    with_config(github, "budget:\n  tokens: 1000\n")
    model.add_script(LAST_WORDS, [  # the continuation: its context holds the last words
        edit("README.md", "# widgets\n", "# widgets\n\nPrints its version.\n", used(150, 50)),
        Final("Document --version\n\nThe README says so.", usage=used(100, 50))])
    model.add_script(INSTRUCTION, [
        edit("cli.py", OLD_MAIN, NEW_MAIN, used(300, 100, 200, 100)),  # 700 of 1,000
        Turn([ToolCall("bash", {"command": "true"})], usage=used(150, 50)),  # 900: wrap up
        Turn([ToolCall("bash", {"command": "true"})], text=LAST_WORDS, usage=used(100, 100)),
        Final("never asked: the budget is spent")])

    first = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))

    assert first.status == "completed", (first.error, service.logs())
    assert first.stop_reason == "budget" and len(model.requests) == 3
    [note] = wrap_up_notes(model)
    assert "Wrap up now" in note and "100 tokens left" in note
    # Committed and pushed; the pull request is open, work in progress.
    [pr] = github.pulls
    assert pr["head"] == first.branch and first.commit_sha
    assert git(github.repo_path(REPO), "rev-parse", first.branch) == first.commit_sha
    assert "--version" in git(github.repo_path(REPO), "show", f"{first.commit_sha}:cli.py")
    assert pr["title"] == INSTRUCTION
    assert "stopped at its budget" in pr["body"], pr["body"]
    # Reported, with the figures and the cost (cache tokens at their prices).
    cost = (550 * 3 + 250 * 15 + 200 * 3.75 + 100 * 0.30) / 1e6
    assert first.cost_usd == pytest.approx(cost)
    assert (first.cache_write_tokens, first.cache_read_tokens) == (200, 100)
    status = bot_comments(github, 7)[-1]["body"]
    assert "stopped at budget (1,100 of 1,000 tokens · $0.0062)" in status, status
    assert f"[#{pr['number']}]" in status and "@async-code continue" in status
    [run] = app_runs(github, first.commit_sha)
    assert (run["status"], run["conclusion"]) == ("completed", "action_required")
    assert run["title"].startswith("Stopped at budget")
    assert "Stopped at budget (1,100 of 1,000 tokens · $0.0062)" in run["summary"]
    assert "1,100 tokens · $0.0062" in run["summary"]
    assert [a["identifier"] for a in run["actions"]] == ["retry", "continue"]
    listed = subprocess.run([sys.executable, "-m", "app", "tasks", "--json"], env=service.env,
                            cwd=service.data_dir, capture_output=True, text=True, check=True)
    [entry] = json.loads(listed.stdout)
    assert entry["cost_usd"] == pytest.approx(cost) and entry["stop_reason"] == "budget"

    service.comment("@async-code continue", comment_id=43)

    [carried] = wait_until(lambda: [t for t in service.store.list() if t.trigger == "continue"],
                           30, "the continuation to be recorded", service.logs)
    carried = service.wait_for_task(carried.id)
    # A fresh budget: the 1,100 tokens spent before do not count against it.
    assert carried.status == "completed", (carried.error, service.logs())
    assert carried.stop_reason == "answer" and carried.input_tokens == 250
    assert carried.number == pr["number"] and carried.branch == first.branch
    assert carried.start_sha == first.commit_sha
    assert git(github.repo_path(REPO), "rev-parse", f"{first.branch}^") == first.commit_sha
    assert "Prints its version." in git(github.repo_path(REPO), "show", f"{first.branch}:README.md")
    assert len(github.pulls) == 1
    assert "It was stopped at its budget before it finished" in first_message(model, LAST_WORDS)
    [on_head] = app_runs(github, carried.commit_sha)
    assert on_head["conclusion"] == "success"


def test_a_budget_stop_before_any_change_ends_with_the_partial_answer(service_factory, github,
                                                                      model):
    service = service_factory(ASYNC_CODE_BUDGET_TOKENS="500").start()
    number = people_pull(github)
    head = git(github.repo_path(REPO), "rev-parse", "feature")
    model.add_script("look into it", [
        Turn([ToolCall("bash", {"command": "cat cli.py"})], text="Reading the code first.",
             usage=used(450, 100)),
        Final("never asked")])

    task = service.wait_for_task(service.comment("@async-code look into it", number=number,
                                                 pull_request=True))

    assert task.status == "completed" and task.stop_reason == "budget", (task.error, service.logs())
    assert git(github.repo_path(REPO), "rev-parse", "feature") == head and task.commit_sha is None
    status = bot_comments(github, number)[-1]["body"]
    assert "stopped at budget (550 of 500 tokens · $0.0029)" in status
    assert "> Reading the code first." in status
    [run] = app_runs(github, head)
    assert (run["conclusion"], run["title"]) == ("action_required", "Stopped at budget")
    assert "Reading the code first." in run["summary"]
    assert [a["identifier"] for a in run["actions"]] == ["retry"]


def test_continue_with_nothing_pushed_says_so(service, github, model):
    service.wait_for_task(service.comment("@async-code continue"))
    assert "Nothing to continue" in bot_comments(github, 7)[-1]["body"]
    assert model.requests == []


def test_a_budget_stop_on_a_pull_request_pushes_to_its_head(service_factory, github, model):
    service = service_factory(ASYNC_CODE_BUDGET_TOKENS="500").start()
    number = people_pull(github)
    head = git(github.repo_path(REPO), "rev-parse", "feature")
    model.add_script("make it louder", [
        edit("cli.py", FRIENDLY_OLD, FRIENDLY_NEW, used(450, 100), text="Louder; tests next."),
        Final("never asked")])

    task = service.wait_for_task(service.comment("@async-code make it louder", number=number,
                                                 pull_request=True))

    assert task.status == "completed" and task.stop_reason == "budget", (task.error, service.logs())
    assert git(github.repo_path(REPO), "rev-parse", "feature") == task.commit_sha
    assert git(github.repo_path(REPO), "rev-parse", "feature^") == head
    status = bot_comments(github, number)[-1]["body"]
    assert "stopped at budget (550 of 500 tokens · $0.0029)" in status
    assert f"[`{task.commit_sha[:7]}`]" in status and "`feature`" in status
    [run] = app_runs(github, task.commit_sha)
    assert run["conclusion"] == "action_required"
    assert [a["identifier"] for a in run["actions"]] == ["retry", "continue"]
    # The run on the head the task started from says no more "success" than the pushed one.
    [on_old_head] = app_runs(github, head)
    assert on_old_head["id"] == task.check_run_id
    assert (on_old_head["status"], on_old_head["conclusion"]) == ("completed", "action_required")
    assert on_old_head["title"] == f"Superseded by {task.commit_sha[:7]}"
    assert "stopped at its budget" in on_old_head["summary"] and on_old_head["actions"] == []
