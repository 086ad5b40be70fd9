"""A task in GitHub's checks UI, end to end: its check runs from queued to a conclusion, and
the Retry, Continue, Cancel and Re-run buttons, on the real stack against the fakes."""

from __future__ import annotations

import pytest

from tests.conftest import READER, REPO, WRITER, wait_until
from tests.fakes.anthropic import Error, Final, ToolCall, Turn
from tests.test_end_to_end import INSTRUCTION, golden_script
from tests.test_requests_end_to_end import (FRIENDLY_NEW, FRIENDLY_OLD, SLEEPING, edit_script,
                                            first_message, git, people_pull)


def app_runs(github, head_sha=None):
    return github.check_runs_of(REPO, head_sha=head_sha, app_slug=github.app_slug)


def statuses(run):
    seen = []
    for state in run["history"]:
        if not seen or seen[-1] != state["status"]:
            seen.append(state["status"])
    return seen


def press(service, github, run_id, identifier=None, *, login=WRITER, action="requested_action"):
    payload = github.check_run_event(run_id, action, sender_login=login, identifier=identifier)
    return service.deliver(payload, event="check_run")


def test_a_pull_request_task_is_followed_from_queued_to_completed(service, github, model):
    number = people_pull(github)
    head = git(github.repo_path(REPO), "rev-parse", "feature")
    model.add_script("make it louder", edit_script("cli.py", FRIENDLY_OLD, FRIENDLY_NEW,
                                                   "Louder greeting"))

    task = service.wait_for_task(service.comment("@async-code make it louder", number=number,
                                                 pull_request=True))

    assert task.status == "completed", (task.error, service.logs())
    [on_old_head] = app_runs(github, head)
    [on_pushed] = app_runs(github, task.commit_sha)
    assert on_old_head["id"] == task.check_run_id and on_pushed["id"] == task.pushed_check_run_id
    assert statuses(on_old_head) == ["queued", "in_progress", "completed"]
    assert on_old_head["history"][0]["external_id"] == task.id
    assert on_old_head["details_url"].endswith(f"#issuecomment-{task.status_comment_id}")
    assert on_old_head["conclusion"] == "success"
    assert on_old_head["title"] == f"Superseded by {task.commit_sha[:7]}"
    assert on_old_head["actions"] == []
    assert (on_pushed["status"], on_pushed["conclusion"]) == ("completed", "success")
    assert on_pushed["external_id"] == task.id and on_pushed["title"] == "Louder greeting"
    assert "| `cli.py` | +1 | −1 |" in on_pushed["summary"]
    assert "`edit_file` `str_replace` `cli.py`: ok" in on_pushed["text"]
    assert [a["identifier"] for a in on_pushed["actions"]] == ["retry", "continue"]


def test_an_issue_task_gets_one_finished_check_run_on_its_commit(service, github, model):
    model.add_script(INSTRUCTION, golden_script())
    task = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))
    assert task.status == "completed", (task.error, service.logs())
    [run] = app_runs(github)
    assert run["head_sha"] == task.commit_sha and run["id"] == task.pushed_check_run_id
    assert statuses(run) == ["completed"] and run["conclusion"] == "success"
    assert "1 turn" not in run["summary"] and "tokens" in run["summary"]


@pytest.mark.parametrize("script, settings, conclusion", [
    ([Final("It already greets loudly enough.")], {}, "neutral"),
    ([Error(400, "invalid_request_error", "no")], {}, "failure"),
    ([Turn([ToolCall("bash", {"command": "sleep 30"})]), Final("late")],
     {"ASYNC_CODE_TASK_TIMEOUT": "4"}, "timed_out"),
], ids=["no-changes", "failure", "timed-out"])
def test_each_ending_has_its_conclusion(service_factory, github, model, script, settings, conclusion):
    service = service_factory(**settings).start()
    number = people_pull(github)
    model.add_script("look at it", script)
    task = service.wait_for_task(service.comment("@async-code look at it", number=number,
                                                 pull_request=True))
    [run] = app_runs(github)
    assert (run["status"], run["conclusion"]) == ("completed", conclusion), (task.error, service.logs())
    assert [a["identifier"] for a in run["actions"]] == ["retry"]
    if conclusion == "neutral":
        assert "It already greets loudly enough." in run["summary"]


def test_cancel_ends_the_check_run_as_cancelled(service, github, model, docker_client):
    number = people_pull(github)
    model.add_script("take your time", SLEEPING)
    task_id = service.comment("@async-code take your time", number=number, pull_request=True)
    wait_until(lambda: service.task(task_id).status == "running", 60, "the task to run")
    service.comment("@async-code cancel", number=number, pull_request=True, comment_id=43)
    assert service.wait_for_task(task_id).status == "cancelled"
    [run] = app_runs(github)
    assert (run["conclusion"], run["title"]) == ("cancelled", f"Cancelled by {WRITER}")


@pytest.mark.parametrize("action, identifier", [("requested_action", "retry"),
                                                ("rerequested", None)], ids=["retry", "re-run"])
def test_retry_and_rerun_ask_again_once_per_check_run(service, github, model, action, identifier):
    model.add_script(INSTRUCTION, golden_script())
    first = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))
    run_id = first.pushed_check_run_id

    assert press(service, github, run_id, identifier, action=action)[0] == 202
    # Delivered again under a new id, or the other way of asking for a retry: nothing new.
    assert press(service, github, run_id, identifier, action=action)[0] == 200
    other = ("rerequested", None) if action == "requested_action" else ("requested_action", "retry")
    assert press(service, github, run_id, other[1], action=other[0])[0] == 200

    [retry] = wait_until(lambda: [x for x in service.store.list() if x.retry_of == first.id], 30,
                         "the retry to be recorded")
    done = service.wait_for_task(retry.id)
    assert done.status == "completed" and done.instruction == first.instruction
    assert done.branch != first.branch and len(github.pulls) == 2


def test_continue_works_on_the_pushed_head_with_the_previous_summary(service, github, model):
    model.add_script("said it did", edit_script("README.md", "# widgets\n", "# widgets\n\nLoud.\n",
                                             "Document the loud greeting"))
    model.add_script(INSTRUCTION, golden_script())
    first = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))
    [pr] = github.pulls

    assert press(service, github, first.pushed_check_run_id, "continue")[0] == 202

    carried = wait_until(lambda: [t for t in service.store.list() if t.trigger == "continue"], 30,
                         "the continuation to be recorded")[0]
    carried = service.wait_for_task(carried.id)
    assert carried.status == "completed", (carried.error, service.logs())
    assert carried.number == pr["number"] and carried.start_sha == first.commit_sha
    assert git(github.repo_path(REPO), "rev-parse", f"{first.branch}^") == first.commit_sha
    seen = first_message(model, "said it did")
    assert seen.startswith(INSTRUCTION)
    assert "Add a --version flag to the CLI" in seen  # what the first task said it did
    assert len(github.pulls) == 1


def test_a_reader_pressing_a_button_runs_nothing(service, github, model):
    model.add_script(INSTRUCTION, golden_script())
    first = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))
    status, answer = press(service, github, first.pushed_check_run_id, "retry", login=READER)
    assert status == 202
    pressed = service.wait_for_task(answer["task_id"])
    assert pressed.status == "rejected"
    assert [t.retry_of for t in service.store.list()].count(first.id) == 0
    assert f"{READER} (read) pressed `retry` on a check run and may not write" in service.logs()
    assert len(github.pulls) == 1
