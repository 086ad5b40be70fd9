"""`--agent NAME` in a request, end to end: the task runs with the agent asked for when the
operator enables it, records which agent and version it ran with, and fails before anything
runs when the agent is not enabled."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.test_end_to_end import INSTRUCTION, golden_script
from tests.test_requests_end_to_end import bot_comments


def listed_task(service, task_id: str) -> dict:
    listed = subprocess.run([sys.executable, "-m", "app", "tasks", "--json"], env=service.env,
                            capture_output=True, text=True, timeout=60, check=True)
    return next(task for task in json.loads(listed.stdout) if task["id"] == task_id)


def test_a_task_records_the_agent_and_version_it_ran_with(service, model):
    model.add_script(INSTRUCTION, golden_script())
    task_id = service.comment(f"@async-code --agent claude {INSTRUCTION}")
    task = service.wait_for_task(task_id)
    assert task.status == "completed", (task.error, service.logs())
    shown = listed_task(service, task_id)
    assert shown["agent"] == "claude"
    assert shown["agent_version"].startswith("async-code ")
    assert shown["cost_usd"] is not None and shown["cost_usd"] > 0


def test_without_the_option_the_services_agent_is_recorded(service, model):
    model.add_script(INSTRUCTION, golden_script())
    task = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))
    assert task.status == "completed", (task.error, service.logs())
    assert (task.agent, task.agent_version.split()[0]) == ("claude", "async-code")


def test_an_agent_the_operator_did_not_enable_fails_before_anything_runs(service, github, model):
    task = service.wait_for_task(service.comment(f"@async-code --agent codex {INSTRUCTION}"))
    assert task.status == "failed" and model.requests == []
    assert task.branch is None and task.container_id is None and github.pulls == []
    status = bot_comments(github, 7)[-1]["body"]
    assert ("the agent `codex` is not one this service enables; choose one of `claude` "
            "(ASYNC_CODE_AGENTS). Nothing was run.") in status, status
