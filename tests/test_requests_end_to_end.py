"""Every way of asking, end to end on the real stack: labels on issues and pull requests,
comments on pull requests, review threads, forks, the control commands and installations.

The real service process, real SQLite, a real Docker sandbox, real git, and the real githubkit
and anthropic clients against the loopback fakes of GitHub and the model API.
"""

from __future__ import annotations

import subprocess

import pytest

from runner.sandbox import TASK_LABEL
from tests.conftest import READER, READER_ID, REPO, WRITER, wait_until
from tests.fakes.anthropic import Final, ToolCall, Turn, text_of
from tests.test_end_to_end import INSTRUCTION, NEW_MAIN, OLD_MAIN, golden_script

ISSUE_LABEL_REQUEST = "Resolve issue #7 as its title and description ask."
PR_LABEL_REQUEST = "Work on pull request #"


def git(repo_path, *args) -> str:
    return subprocess.run(["git", "--git-dir", str(repo_path), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def edit_script(path: str, old: str, new: str, answer: str, before: list | None = None):
    return [*(before or []),
            Turn([ToolCall("edit_file", {"command": "str_replace", "path": path, "old_str": old,
                                         "new_str": new}, expect_error=False)]),
            Final(answer)]


def bot_comments(github, number: int) -> list[dict]:
    return [c for c in github.comments.values() if c["issue_number"] == number]


def first_message(model, match: str) -> str:
    for request in model.requests:
        content = text_of(((request["json"] or {}).get("messages") or [{}])[0].get("content"))
        if match in content:
            return content
    raise AssertionError(f"the model never saw a request containing {match!r}")


def people_pull(github, *, files=None, **kwargs) -> int:
    """A pull request carol opened from `feature`, changing cli.py."""
    return github.add_pull(REPO, head="feature", title="Friendlier greeting",
                           body="Makes the greeting friendlier.",
                           files=files or {"cli.py": (
                               'import sys\n\n\ndef main(argv):\n    print("hi from widgets")\n'
                               '    return 0\n')}, **kwargs)


FRIENDLY_OLD = '    print("hi from widgets")'
FRIENDLY_NEW = '    print("hi from widgets!")'


# Labels

def test_a_label_on_an_issue_opens_a_pull_request_and_comes_off(service, github, model):
    github.add_issue(REPO, 7, title="Print the version", body="`widgets --version` should work.",
                     user=WRITER, labels=["async-code"])
    model.add_script(ISSUE_LABEL_REQUEST, edit_script("cli.py", OLD_MAIN, NEW_MAIN,
                                                      "Add a --version flag"))
    task = service.wait_for_task(service.label(title="Print the version",
                                               body="`widgets --version` should work.",
                                               author=WRITER))
    assert task.status == "completed", (task.error, service.logs())
    assert task.trigger == "label" and task.label == "async-code"
    [pr] = [p for p in github.pulls if p["user"] == github.bot_login]
    assert pr["title"] == "Add a --version flag" and "Fixes #7" in pr["body"]
    assert github.issue_labels(REPO, 7) == []  # adding it again asks again
    assert "`widgets --version` should work." in first_message(model, ISSUE_LABEL_REQUEST)
    assert 'author="trusted"' in first_message(model, ISSUE_LABEL_REQUEST)


def test_a_label_added_by_a_reader_is_refused_and_comes_off(service, github, model):
    github.add_issue(REPO, 7, labels=["async-code"])
    task = service.wait_for_task(service.label(login=READER, user_id=READER_ID))
    assert task.status == "rejected" and task.error == "not allowed"
    [reply] = bot_comments(github, 7)
    assert reply["body"].startswith(f"Sorry @{READER}, only people with write access")
    assert github.issue_labels(REPO, 7) == [] and model.requests == []


def test_a_label_taken_off_before_the_task_starts_withdraws_it(service, github, model):
    github.add_issue(REPO, 7)  # the label is already gone when the task is acknowledged
    task = service.wait_for_task(service.label())
    assert task.status == "rejected" and "label removed" in task.error
    assert bot_comments(github, 7) == [] and model.requests == []


def test_a_label_on_a_pull_request_addresses_open_threads_and_failing_checks(service, github, model):
    number = people_pull(github)
    head_before = git(github.repo_path(REPO), "rev-parse", "feature")
    github.add_review_comment(REPO, number, 801, WRITER, "Add an exclamation mark here.",
                              path="cli.py", line=5)
    github.add_review_comment(REPO, number, 802, WRITER, "Old nit, already handled.",
                              path="cli.py", line=4)
    github.resolve_thread(REPO, 802)
    github.add_check_run(REPO, head_before, "unit tests", conclusion="failure",
                         title="1 test failed", summary="test_greeting expected an exclamation mark")
    github.add_check_run(REPO, head_before, "lint", conclusion="success", summary="all clean")
    github.label_issue(REPO, number, "async-code")
    model.add_script(PR_LABEL_REQUEST, edit_script("cli.py", FRIENDLY_OLD, FRIENDLY_NEW,
                                                   "Add the exclamation mark"))

    task = service.wait_for_task(service.label(subject="pull_request", number=number,
                                               author="carol"))

    assert task.status == "completed", (task.error, service.logs())
    seen = first_message(model, PR_LABEL_REQUEST)
    assert "Add an exclamation mark here." in seen and "Old nit" not in seen
    assert "unit tests (reported by ci): failure — 1 test failed" in seen
    assert "expected an exclamation mark" in seen
    assert "lint" not in seen  # only failing checks
    head = git(github.repo_path(REPO), "rev-parse", "feature")
    assert git(github.repo_path(REPO), "rev-parse", f"{head}^") == head_before
    assert 'print("hi from widgets!")' in git(github.repo_path(REPO), "show", f"{head}:cli.py")
    assert len(github.pulls) == 1 and github.issue_labels(REPO, number) == []


# Comments and review threads on pull requests

def test_a_comment_on_the_bots_own_pull_request_adds_a_commit_to_it(service, github, model):
    # First: the second conversation quotes the pull request, which quotes the first request.
    model.add_script("also say hello", edit_script(
        "README.md", "# widgets\n", "# widgets\n\nSays hello.\n", "Say hello in the README"))
    model.add_script(INSTRUCTION, golden_script())
    first = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))
    assert first.status == "completed", (first.error, service.logs())
    [pr] = github.pulls

    second = service.wait_for_task(service.comment("@async-code also say hello in the README",
                                                   number=pr["number"], pull_request=True,
                                                   comment_id=43))

    assert second.status == "completed", (second.error, service.logs())
    assert second.trigger == "pr_comment" and second.branch == first.branch
    assert len(github.pulls) == 1  # no new pull request
    repo = github.repo_path(REPO)
    head = git(repo, "rev-parse", first.branch)
    assert head == second.commit_sha and second.start_sha == first.commit_sha
    assert git(repo, "rev-parse", f"{head}^") == first.commit_sha
    seen = first_message(model, "also say hello")
    assert "cli.py" in seen and "--version" in seen  # the pull request's diff is context
    [status] = [c for c in bot_comments(github, pr["number"])]
    assert f"pushed [`{head[:7]}`]" in status["body"] and "Say hello in the README" in status["body"]


def test_a_review_comment_is_answered_in_its_thread_with_the_commit(service, github, model):
    number = people_pull(github)
    model.add_script("use an exclamation mark", edit_script(
        "cli.py", FRIENDLY_OLD, FRIENDLY_NEW, "Greet with an exclamation mark"))

    task = service.wait_for_task(service.review("@async-code use an exclamation mark",
                                                number=number, comment_id=880, path="cli.py",
                                                line=5))

    assert task.status == "completed", (task.error, service.logs())
    head = git(github.repo_path(REPO), "rev-parse", "feature")
    [reply] = [c for c in github.review_comments.values() if c["user"] == github.bot_login]
    assert reply["in_reply_to"] == 880 and reply["id"] == task.status_comment_id
    assert "queued" in reply["history"][0]
    assert f"pushed [`{head[:7]}`]" in reply["body"]
    assert "Greet with an exclamation mark" in reply["body"]
    assert bot_comments(github, number) == []  # nothing in the conversation
    seen = first_message(model, "use an exclamation mark")
    assert "On cli.py, line 5 of the new version" in seen and 'print("hi from widgets")' in seen


def test_a_fork_pull_request_gets_one_reply_and_nothing_runs(service, github, model):
    number = people_pull(github, fork="carol/widgets")
    fork_head = git(github.repo_path("carol/widgets"), "rev-parse", "feature")

    task = service.wait_for_task(service.comment("@async-code fix the greeting", number=number,
                                                 pull_request=True))

    assert task.status == "rejected"
    [reply] = bot_comments(github, number)
    assert "comes from a fork" in reply["body"] and "secrets" in reply["body"]
    assert model.requests == []
    assert git(github.repo_path("carol/widgets"), "rev-parse", "feature") == fork_head


def test_a_closed_pull_request_gets_one_reply_and_no_task_runs(service, github, model):
    number = people_pull(github, state="closed")
    task = service.wait_for_task(service.comment("@async-code fix it", number=number,
                                                 pull_request=True))
    assert task.status == "rejected"
    [reply] = bot_comments(github, number)
    assert "is closed" in reply["body"] and model.requests == []


def test_a_branch_that_moved_meanwhile_fails_and_nothing_is_force_pushed(service, github, model):
    number = people_pull(github)
    pushed = {}

    def someone_pushes(_output: str) -> bool:
        pushed["sha"] = github.push_commit(REPO, "feature", {"NOTES.md": "carol was here\n"})
        return True

    model.add_script("make it louder", edit_script(
        "cli.py", FRIENDLY_OLD, FRIENDLY_NEW, "Louder greeting",
        before=[Turn([ToolCall("bash", {"command": "true"}, expect=someone_pushes)])]))

    task = service.wait_for_task(service.comment("@async-code make it louder", number=number,
                                                 pull_request=True))

    assert task.status == "failed" and "someone pushed to feature" in task.error
    assert git(github.repo_path(REPO), "rev-parse", "feature") == pushed["sha"]
    assert "Nothing was force-pushed" in bot_comments(github, number)[0]["body"]


def test_a_protected_head_branch_is_never_pushed_to(service, github, model):
    number = people_pull(github)
    github.protect_branch(REPO, "feature")
    task = service.wait_for_task(service.comment("@async-code tweak it", number=number,
                                                 pull_request=True))
    assert task.status == "failed" and "protected branch" in task.error
    assert model.requests == []


# Commands

SLEEPING = [Turn([ToolCall("bash", {"command": "sleep 100", "timeout": 110})]), Final("slept")]


def task_containers(docker_client, task_id):
    return docker_client.containers.list(all=True, filters={"label": f"{TASK_LABEL}={task_id}"})


def test_cancel_stops_a_running_task_and_removes_its_sandbox(service, github, model, docker_client):
    model.add_script("take your time", SLEEPING)
    task_id = service.comment("@async-code take your time")
    wait_until(lambda: task_containers(docker_client, task_id), 60, "the sandbox to start",
               service.logs)

    cancel = service.wait_for_task(service.comment("@async-code cancel", comment_id=43))

    task = service.wait_for_task(task_id)
    assert cancel.status == "completed" and cancel.command == "cancel"
    assert task.status == "cancelled" and task.cancel_requested_by == WRITER
    assert task_containers(docker_client, task_id) == []
    status = github.comments[task.status_comment_id]["body"]
    assert f"cancelled by @{WRITER}" in status
    assert any("stopping" in c["body"] for c in bot_comments(github, 7))
    assert github.pulls == []


def test_cancel_ends_a_waiting_task_before_it_starts(service_factory, github, model, docker_client):
    service = service_factory().start(workers=1)
    model.add_script("take your time", SLEEPING)
    running = service.comment("@async-code take your time", number=7)
    wait_until(lambda: service.task(running).status == "running", 60, "the first task to run")
    waiting = service.comment("@async-code add a flag", number=8, comment_id=50)
    wait_until(lambda: service.task(waiting).status_comment_id, 30, "the second to be queued")

    service.wait_for_task(service.comment("@async-code cancel", number=8, comment_id=51))

    task = service.wait_for_task(waiting)
    assert task.status == "cancelled" and task.started_at is None
    assert "cancelled by" in github.comments[task.status_comment_id]["body"]
    assert service.task(running).status == "running"  # another issue's task is left alone
    service.wait_for_task(service.comment("@async-code cancel", number=7, comment_id=52))
    assert service.wait_for_task(running).status == "cancelled"


def test_a_second_request_on_the_same_issue_waits_for_the_first(service, github, model):
    model.add_script("first", [Turn([ToolCall("bash", {"command": "sleep 3"})]), Final("done")])
    model.add_script("second", [Final("nothing to change")])
    first = service.comment("@async-code first, please")
    wait_until(lambda: service.task(first).status == "running", 60, "the first task to run")
    second = service.comment("@async-code second, please", comment_id=43)

    done_second = service.wait_for_task(second)
    done_first = service.task(first)

    assert done_first.status == done_second.status == "completed"
    assert done_second.started_at >= done_first.finished_at
    queued = github.comments[done_second.status_comment_id]["history"][0]
    assert f"It starts when task `{first[:8]}` on this issue has finished." in queued


def test_retry_asks_again_from_the_original_base(service, github, model):
    model.add_script(INSTRUCTION, golden_script())
    first = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))
    assert first.status == "completed", (first.error, service.logs())

    service.wait_for_task(service.comment("@async-code retry", comment_id=43))
    retry = wait_until(lambda: [t for t in service.store.list() if t.retry_of == first.id], 30,
                       "the retry to be recorded")[0]
    retry = service.wait_for_task(retry.id)

    assert retry.status == "completed", (retry.error, service.logs())
    assert retry.instruction == first.instruction and retry.branch != first.branch
    assert len(github.pulls) == 2
    assert {p["base"] for p in github.pulls} == {"main"}


def test_status_and_help_answer_once(service, github, model):
    model.add_script(INSTRUCTION, golden_script())
    first = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))
    service.wait_for_task(service.comment("@async-code status", comment_id=43))
    service.wait_for_task(service.comment("@async-code HELP", comment_id=44))

    *_, status_reply, help_reply = [c["body"] for c in bot_comments(github, 7)]
    assert f"`{first.id[:8]}` | completed" in status_reply and first.pr_url in status_reply
    assert "--base" in help_reply and "cancel" in help_reply and "async-code" in help_reply


def test_commands_from_readers_are_refused(service, github, model):
    task = service.wait_for_task(service.comment("@async-code cancel", login=READER,
                                                 user_id=READER_ID))
    assert task.status == "rejected"
    [reply] = bot_comments(github, 7)
    assert reply["body"].startswith(f"Sorry @{READER}")


def test_an_unknown_option_gets_the_grammar_and_nothing_starts(service, github, model):
    task = service.wait_for_task(service.comment("@async-code --fast add a flag"))
    assert task.status == "rejected" and task.error == "unreadable request"
    [reply] = bot_comments(github, 7)
    assert "unknown option `--fast`" in reply["body"] and "--base" in reply["body"]
    assert model.requests == []


def test_draft_and_base_options_shape_the_pull_request(service, github, model):
    github.push_commit(REPO, "release", {"CHANGES.md": "1.0\n"}, parent_branch="main")
    model.add_script(INSTRUCTION, golden_script())
    task = service.wait_for_task(service.comment(f"@async-code --draft --base release {INSTRUCTION}"))
    assert task.status == "completed", (task.error, service.logs())
    [pr] = github.pulls
    assert pr["base"] == "release" and pr["draft"] is True
    repo = github.repo_path(REPO)
    assert git(repo, "rev-parse", f"{task.branch}^") == git(repo, "rev-parse", "release")


# Installations

@pytest.mark.parametrize("event, payload", [
    ("installation", {"action": "deleted", "installation": {"id": 77}}),
    ("installation", {"action": "suspend", "installation": {"id": 77}}),
    ("installation_repositories", {"action": "removed", "installation": {"id": 77},
                                   "repositories_removed": [{"full_name": REPO}]}),
])
def test_work_is_refused_without_a_github_call_where_the_app_was_removed(service, github, model,
                                                                         event, payload):
    status, answer = service.deliver(payload, event=event)
    assert (status, answer["message"]) == (200, "recorded")
    calls_before = len(github.requests)

    task = service.wait_for_task(service.comment("@async-code add a flag"))

    assert task.status == "rejected" and task.error
    assert len(github.requests) == calls_before and model.requests == []
    assert f"task {task.id} for {REPO} refused" in service.logs()


def test_retry_never_repeats_a_request_that_was_refused(service, github, model):
    # A reader's request is refused; a writer's `retry` must not run the reader's words.
    refused = service.wait_for_task(service.comment("@async-code delete the tests", login=READER,
                                                    user_id=READER_ID))
    assert refused.status == "rejected"
    service.wait_for_task(service.comment("@async-code retry", comment_id=43))
    assert [t.retry_of for t in service.store.list()] == [None, None]
    assert "Nothing to retry" in bot_comments(github, 7)[-1]["body"] and model.requests == []
