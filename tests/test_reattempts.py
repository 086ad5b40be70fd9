"""Re-attempts end to end on SQLite: a task whose worker died runs again and finishes on the same
status comment, branch and pull request; an attempt that was only slow, once superseded, writes
nothing more anywhere."""

from __future__ import annotations

import signal
import subprocess

import docker
import pytest

from runner import pull_request
from runner.github import GitHubApp
from tests.conftest import APP_ID, INSTALLATION_ID, REPO, wait_until
from tests.fakes.anthropic import Final, ToolCall, Turn

# Each attempt's agent waits in its sandbox until the test lets that attempt go on.
GATED = [Turn([ToolCall("bash", {"command": "until [ -e /tmp/go ]; do sleep 0.2; done; "
                                             "echo 'VERSION = \"1.0\"' > version.py",
                                 "timeout": 600})]),
         Final("Add a version module\n\nversion.py holds the version.")]


def sandboxes(docker_client, task_id, attempt=None, *, running=False):
    # The low-level list: it inspects nothing, so a container being removed does not break it.
    labels = [f"async-code.task={task_id}"] + ([f"async-code.attempt={attempt}"] if attempt else [])
    return docker_client.api.containers(all=not running, filters={"label": labels})


def touch_go(docker_client, sandbox):
    docker_client.api.exec_start(docker_client.api.exec_create(sandbox["Id"], ["touch", "/tmp/go"]))


def let_go(docker_client, task_id, attempt, logs):
    [sandbox] = wait_until(lambda: sandboxes(docker_client, task_id, attempt, running=True), 60,
                           f"the sandbox of attempt {attempt}", logs)
    touch_go(docker_client, sandbox)


def work_trees(service, task_id):
    return list((service.data_dir / "workspaces").glob(f"*/{task_id}-*"))


def bot_comments(github, number=7):
    return [c for c in github.comments.values()
            if c["user"] == "async-code[bot]" and c["issue_number"] == number]


def pushes(github):
    return [r for r in github.requests if r["path"].endswith("/git-receive-pack")]


def git(github, *args):
    return subprocess.run(["git", "--git-dir", str(github.repo_path(REPO)), *args],
                          capture_output=True, text=True)


def pushed_by_the_lost_attempt(github, task, app_key, *, open_pull_request):
    """What an attempt that died after pushing (and maybe after opening its pull request) left."""
    message = pull_request.commit_message("Earlier attempt", number=task.number, task_id=task.id,
                                          requested_by=task.requested_by, requested_by_id=None)
    sha = git(github, "commit-tree", "main^{tree}", "-p", "main", "-m", message).stdout.strip()
    assert git(github, "update-ref", f"refs/heads/{task.branch}", sha).returncode == 0
    if open_pull_request:
        app = GitHubApp(app_id=str(APP_ID), private_key=app_key[0], api_url=github.base_url,
                        slug="async-code")
        client = app.repo_client(INSTALLATION_ID, REPO, {"pull_requests": "write"})
        client.open_pull_request(title="Earlier attempt", head=task.branch, base="main", body=(
            pull_request.body(answer="Earlier attempt", instruction=task.instruction,
                              number=task.number, requested_by=task.requested_by,
                              task_id=task.id, files=[])))
    return sha


@pytest.mark.parametrize("left", ["nothing pushed", "pushed", "pushed and opened"])
def test_a_task_killed_mid_run_is_attempted_again_on_the_same_comment_branch_and_pull_request(
        service_factory, github, model, docker_client, app_key, left):
    service = service_factory().start(workers=1)
    model.add_script("add a version module", GATED)
    task_id = service.comment("@async-code add a version module")
    wait_until(lambda: sandboxes(docker_client, task_id, 1), 60, "the first sandbox", service.logs)
    service.stop(signal.SIGKILL)  # a crash: nothing gets to clean up
    lost = service.task(task_id)
    assert (lost.status, lost.attempt) == ("running", 1)
    earlier = (pushed_by_the_lost_attempt(github, lost, app_key,
                                          open_pull_request=left == "pushed and opened")
               if left != "nothing pushed" else None)
    if earlier is not None:  # as the attempt records its commit before it pushes
        service.store.update(task_id, commit_sha=earlier)
    pulls_before = [p["number"] for p in github.pulls]

    service.start(workers=1)
    let_go(docker_client, task_id, 2, service.logs)
    task = service.wait_for_task(task_id)

    assert (task.status, task.attempt, task.error) == ("completed", 2, None)
    [pull] = github.pulls
    assert (pull["head"], pull["number"]) == (lost.branch, task.pr_number)
    if left == "pushed and opened":
        assert [pull["number"]] == pulls_before
        assert "version.py" in pull["body"] and pull["title"] == "Add a version module"
    tip = git(github, "rev-parse", lost.branch).stdout.strip()
    assert tip == task.commit_sha
    if earlier is not None:  # replaced, since it was this task's own commit
        assert git(github, "merge-base", "--is-ancestor", earlier, tip).returncode == 1
    [status] = bot_comments(github)
    assert any("re-attempt 2 of 2" in body for body in status["history"])
    assert f"#{task.pr_number}" in status["history"][-1]
    wait_until(lambda: not sandboxes(docker_client, task_id) and not work_trees(service, task_id),
               30, "the attempts' sandboxes and work trees to go", service.logs)


def test_a_re_attempt_never_replaces_a_commit_someone_else_pushed(service_factory, github, model,
                                                                   docker_client):
    service = service_factory().start(workers=1)
    model.add_script("add a version module", GATED)
    task_id = service.comment("@async-code add a version module")
    wait_until(lambda: sandboxes(docker_client, task_id, 1), 60, "the first sandbox", service.logs)
    service.stop(signal.SIGKILL)
    branch = service.task(task_id).branch
    theirs = git(github, "commit-tree", "main^{tree}", "-p", "main", "-m", "a person's work").stdout.strip()
    assert git(github, "update-ref", f"refs/heads/{branch}", theirs).returncode == 0

    service.start(workers=1)
    let_go(docker_client, task_id, 2, service.logs)
    task = service.wait_for_task(task_id)

    assert task.status == "failed" and "someone pushed to" in task.error
    assert git(github, "rev-parse", branch).stdout.strip() == theirs
    assert github.pulls == []


def test_a_slow_attempt_once_superseded_writes_nothing(service_factory, github, model,
                                                       docker_client):
    service = service_factory().start(workers=2)
    model.add_script("add a version module", GATED)
    task_id = service.comment("@async-code add a version module")
    wait_until(lambda: sandboxes(docker_client, task_id, 1), 60, "the first sandbox", service.logs)
    # Its worker is judged gone, as a pass finding it silent would; but it was only slow.
    assert service.store.reattempt(task_id, 1)

    let_go(docker_client, task_id, 2, service.logs)
    task = service.wait_for_task(task_id)
    assert (task.status, task.attempt) == ("completed", 2)
    [status] = bot_comments(github)
    edits = list(status["history"])
    # Now the slow one wakes up (unless recovery removed its sandbox meanwhile, which ends it too).
    for sandbox in sandboxes(docker_client, task_id, 1):
        try:
            touch_go(docker_client, sandbox)
        except docker.errors.APIError:  # removed meanwhile
            pass
    wait_until(lambda: "attempt 1 was superseded" in service.logs(), 60,
               "the slow attempt to stop", service.logs)

    assert service.task(task_id) == task
    assert len(github.pulls) == 1 and len(pushes(github)) == 1
    assert status["history"] == edits and f"#{task.pr_number}" in edits[-1]
    wait_until(lambda: not sandboxes(docker_client, task_id) and not work_trees(service, task_id),
               30, "the attempts' sandboxes and work trees to go", service.logs)
