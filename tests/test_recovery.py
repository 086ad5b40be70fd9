"""Recovery in-process, against the fake GitHub, a real Docker engine and a real store."""

from __future__ import annotations

import os
import socket
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from app.settings import Settings
from app.store import FAILED, PENDING, RUNNING, NewTask, Store, Superseded, utcnow
from runner import recovery, status
from runner.services import Services
from runner.github import GitHubApp
from runner.sandbox import DockerDeployment, SandboxLimits, SandboxUser
from tests.conftest import APP_ID, INSTALLATION_ID, REPO

HERE = socket.gethostname()
LONG_AGO = (datetime.now(timezone.utc) - timedelta(minutes=30)).isoformat()


@pytest.fixture
def services(tmp_path, github, app_key, docker_client):
    store = Store(tmp_path / "t.db")
    store.initialise()
    app = GitHubApp(app_id=str(APP_ID), private_key=app_key[0], api_url=github.base_url, slug="async-code")
    return Services(settings=Settings(data_dir=str(tmp_path / "data")), store=store, github=app,
                    docker=docker_client, anthropic=None, instance=store.instance_id(),
                    sandbox=SandboxUser("61000:61000", (61000, 61000)))


def add_task(services, github, number, *, status_=PENDING, claimed_by=None, heartbeat_at=None,
             acknowledged=True):
    store = services.store
    task = store.record_delivery(f"g{number}", "issue_comment", "created", NewTask(
        trigger="comment", repo=REPO, installation_id=INSTALLATION_ID, number=number,
        comment_id=number, instruction="x", requested_by="alice", requested_by_id=9))
    comment_id = None
    github.add_issue(REPO, number)
    if acknowledged:
        client = services.github.repo_client(INSTALLATION_ID, REPO, {"issues": "write", "metadata": "read"})
        comment_id = client.comment(number, status.queued(task.id, 1))
        store.update(task.id, acknowledged_at=utcnow(), status_comment_id=comment_id)
    if status_ == RUNNING:
        running_as(store, task.id, claimed_by)
    store.update(task.id, claimed_by=claimed_by, heartbeat_at=heartbeat_at)
    return task.id, comment_id


def running_as(store, task_id, claimed_by, attempt=1):
    """The task running its `attempt`th attempt, held by `claimed_by` since long ago."""
    for earlier in range(1, attempt + 1):
        if earlier > 1:
            assert store.reattempt(task_id, earlier - 1)
        assert store.claim_next(claimed_by).id == task_id
    store.update(task_id, started_at=LONG_AGO)


def tree_of(services, task_id, attempt=1, instance=None):
    return services.settings.workspaces_path / (instance or services.instance) / f"{task_id}-{attempt}"


def leftovers_for(services, task_id, sandbox_image, tmp_path, attempt=1, instance=None):
    tree = tree_of(services, task_id, attempt, instance) / "tree"
    tree.mkdir(parents=True)
    deployment = DockerDeployment(services.docker, image=sandbox_image, work_tree=tree, task_id=task_id,
                                  instance=instance or services.instance, user="1000:1000",
                                  limits=SandboxLimits(memory="64m", cpus=0.5, pids=32), attempt=attempt)
    deployment.start()
    return deployment


def labelled(services, task_id):
    return services.docker.api.containers(all=True, filters={"label": f"async-code.task={task_id}"})


def test_a_running_pass_reattempts_only_the_tasks_of_dead_holders(services, github, sandbox_image, tmp_path):
    dead_here, dead_comment = add_task(services, github, 1, status_=RUNNING, claimed_by=f"{HERE}:999999")
    silent_elsewhere, _ = add_task(services, github, 2, status_=RUNNING, claimed_by="other-host:12",
                                   heartbeat_at=LONG_AGO)
    alive_elsewhere, _ = add_task(services, github, 3, status_=RUNNING, claimed_by="other-host:13",
                                  heartbeat_at=utcnow())
    ours, _ = add_task(services, github, 4, status_=RUNNING, claimed_by=f"{HERE}:{os.getpid()}")
    sandboxes = {task_id: leftovers_for(services, task_id, sandbox_image, tmp_path)
                 for task_id in (dead_here, alive_elsewhere, ours)}
    try:
        recovery.recover(services, starting=False)
        store = services.store
        assert [store.get(t).status for t in (dead_here, silent_elsewhere, alive_elsewhere, ours)] == [
            PENDING, PENDING, RUNNING, RUNNING]
        assert "re-attempt 2 of 2" in github.comments[dead_comment]["history"][-1]
        assert len(github.comments[dead_comment]["history"]) == 2  # edited, not a second comment
        with pytest.raises(Superseded):  # should the lost attempt's worker wake up after all
            store.update(dead_here, attempt=1, commit_sha="0" * 40)
        assert labelled(services, dead_here) == []
        assert not tree_of(services, dead_here).exists()
        for live in (alive_elsewhere, ours):
            assert len(labelled(services, live)) == 1
            assert tree_of(services, live).is_dir()
        # The next attempt takes the task; past the last one, recovery fails it and says why.
        assert store.claim_next(f"{HERE}:999999").id == dead_here
        recovery.recover(services, starting=False)
        assert store.get(dead_here).status == FAILED
        assert store.get(dead_here).error == recovery.gave_up(2, 2)
        assert "ASYNC_CODE_MAX_ATTEMPTS is 2" in github.comments[dead_comment]["history"][-1]
    finally:
        for deployment in sandboxes.values():
            deployment.stop()


def test_at_start_up_our_own_pid_counts_as_a_previous_life(services, github):
    task_id, _ = add_task(services, github, 1, status_=RUNNING, claimed_by=f"{HERE}:{os.getpid()}")
    recovery.recover(services, starting=False)
    assert services.store.get(task_id).status == RUNNING
    recovery.recover(services, starting=True)
    assert services.store.get(task_id).status == PENDING


def test_a_half_done_acknowledgement_is_handed_back(services, github):
    cut_short, _ = add_task(services, github, 1, claimed_by=f"{HERE}:999999", acknowledged=False)
    in_progress, _ = add_task(services, github, 2, claimed_by=f"{HERE}:{os.getpid()}", acknowledged=False)
    recovery.recover(services, starting=False)
    assert services.store.get(cut_short).claimed_by is None
    assert services.store.get(in_progress).claimed_by == f"{HERE}:{os.getpid()}"
    assert services.store.claim_for_acknowledgement("next:1").id == cut_short


def test_a_fresh_claim_carries_a_fresh_heartbeat(services, github):
    task_id, _ = add_task(services, github, 1, claimed_by=None, heartbeat_at=LONG_AGO)
    claimed = services.store.claim_next("other-host:5")
    assert claimed.id == task_id and claimed.heartbeat_at > LONG_AGO
    assert not recovery.is_orphaned(claimed, host=HERE, own_pid=os.getpid(), starting=False,
                                    now=datetime.now(timezone.utc))


def test_a_leftover_tree_deeper_than_recursion_is_removed_and_the_pass_goes_on(services, github):
    from tests.test_tree_removal import make_deep_tree

    workspaces = services.work_trees
    workspaces.mkdir(parents=True)
    make_deep_tree(workspaces / "deep-leftover", 1500)
    (workspaces / "plain-leftover" / "tree").mkdir(parents=True)

    recovery.recover(services, starting=True)

    assert list(workspaces.iterdir()) == []


def test_a_container_that_will_not_go_keeps_its_tree_and_not_the_others(
        services, github, sandbox_image, tmp_path, monkeypatch):
    import docker

    stubborn, _ = add_task(services, github, 1, status_=RUNNING, claimed_by=f"{HERE}:999999")
    other, _ = add_task(services, github, 2, status_=RUNNING, claimed_by=f"{HERE}:999998")
    sandboxes = {task_id: leftovers_for(services, task_id, sandbox_image, tmp_path)
                 for task_id in (stubborn, other)}
    stubborn_id = sandboxes[stubborn].container_id
    real_remove = services.docker.api.remove_container

    def remove_container(container, **options):
        if container == stubborn_id:
            raise docker.errors.APIError("removal of container failed", explanation="device busy")
        return real_remove(container, **options)

    monkeypatch.setattr(services.docker.api, "remove_container", remove_container)
    try:
        recovery.recover(services, starting=False)

        assert services.store.get(stubborn).status == PENDING
        assert labelled(services, other) == []
        assert not tree_of(services, other).exists()
        # Its sandbox may still write to the tree: both stay for a later pass.
        assert len(labelled(services, stubborn)) == 1
        assert tree_of(services, stubborn).is_dir()

        monkeypatch.setattr(services.docker.api, "remove_container", real_remove)
        recovery.recover(services, starting=False)
        assert labelled(services, stubborn) == []
        assert not tree_of(services, stubborn).exists()
    finally:
        for deployment in sandboxes.values():
            deployment.stop()


def test_an_interrupted_review_thread_task_says_so_in_its_thread(services, github):
    number = github.add_pull(REPO, head="feature", files={"cli.py": "print('hi')\n"})
    github.add_review_comment(REPO, number, 880, "alice", "@async-code rename", path="cli.py", line=1)
    task = services.store.record_delivery("g-review", "pull_request_review_comment", "created", NewTask(
        trigger="review_comment", repo=REPO, installation_id=INSTALLATION_ID, number=number,
        comment_id=880, instruction="rename", requested_by="alice", requested_by_id=9,
        review_context={"path": "cli.py", "line": 1, "thread_id": 880}))
    client = services.github.repo_client(INSTALLATION_ID, REPO, {"pull_requests": "write"})
    reply_id = client.reply_in_review_thread(number, 880, status.queued(task.id, 1))
    services.store.update(task.id, acknowledged_at=utcnow(), status_comment_id=reply_id)
    running_as(services.store, task.id, f"{HERE}:999999", attempt=2)

    recovery.recover(services, starting=False)

    assert services.store.get(task.id).status == FAILED
    assert "ASYNC_CODE_MAX_ATTEMPTS is 2" in github.review_comments[reply_id]["body"]


def test_an_interrupted_task_concludes_its_check_run(services, github):
    import subprocess

    number = github.add_pull(REPO, head="feature", files={"cli.py": "print('hi')\n"})
    task_id = services.store.record_delivery("g-pr", "issue_comment", "created", NewTask(
        trigger="pr_comment", repo=REPO, installation_id=INSTALLATION_ID, number=number,
        comment_id=900, instruction="x", requested_by="alice", requested_by_id=9)).id
    services.store.update(task_id, acknowledged_at=utcnow())
    running_as(services.store, task_id, f"{HERE}:999999", attempt=2)
    head = subprocess.run(["git", "--git-dir", str(github.repo_path(REPO)), "rev-parse", "feature"],
                          check=True, capture_output=True, text=True).stdout.strip()
    client = services.github.repo_client(INSTALLATION_ID, REPO, {"checks": "write"})
    run_id = client.create_check_run({"name": "async-code", "head_sha": head,
                                      "external_id": task_id, "status": "in_progress"})
    services.store.update(task_id, check_run_id=run_id)

    recovery.recover(services, starting=False)

    run = github.check_run(run_id)
    assert (run["status"], run["conclusion"], run["title"]) == ("completed", "failure", "Interrupted")


def test_leftovers_of_an_earlier_attempt_go_and_another_store_s_stay(services, github, sandbox_image,
                                                                    tmp_path):
    task_id, _ = add_task(services, github, 1, status_=RUNNING, claimed_by=f"{HERE}:{os.getpid()}")
    assert services.store.reattempt(task_id, 1)
    assert services.store.claim_next(f"{HERE}:{os.getpid()}").attempt == 2
    sandboxes = [leftovers_for(services, task_id, sandbox_image, tmp_path, attempt=1),
                 leftovers_for(services, task_id, sandbox_image, tmp_path, attempt=2),
                 leftovers_for(services, "0" * 32, sandbox_image, tmp_path, attempt=1,
                               instance="another-store")]
    earlier, current, another_store_s = sandboxes
    try:
        recovery.recover(services, starting=False)

        containers = {c["Id"] for c in labelled(services, task_id) + labelled(services, "0" * 32)}
        assert earlier.container_id not in containers and not tree_of(services, task_id, 1).exists()
        assert current.container_id in containers and tree_of(services, task_id, 2).is_dir()
        assert another_store_s.container_id in containers
        assert tree_of(services, "0" * 32, 1, instance="another-store").is_dir()
    finally:
        for deployment in sandboxes:
            deployment.stop()


def test_work_trees_of_the_layout_before_attempts_go_once_their_task_has_ended(services, github):
    # Before attempts, a work tree was `<workspaces>/<task id>`: an upgrade must not leave them.
    unfinished, _ = add_task(services, github, 1)
    ended = "e" * 32
    workspaces = services.settings.workspaces_path
    for name in (unfinished, ended):
        (workspaces / name / "tree").mkdir(parents=True)
        (workspaces / name / "tree" / "file.txt").write_text("x")
    another_store = workspaces / "0123456789abcdef" / f"{ended}-1"
    another_store.mkdir(parents=True)

    recovery.recover(services, starting=False)

    assert not (workspaces / ended).exists()
    assert (workspaces / unfinished / "tree" / "file.txt").exists()
    assert another_store.is_dir()


def test_a_side_by_side_requests_members_go_with_it_when_its_worker_died(services, github):
    """Recovery re-attempts the request, and its members wait with it: none is re-attempted or
    failed on its own, and the request's next attempt starts the one that had not ended."""
    store = services.store
    request_id, _ = add_task(services, github, 1, status_=RUNNING, claimed_by=f"{HERE}:999999")
    request = store.get(request_id)
    finished, unfinished = store.start_members(request, ["claude", "codex"])
    store.finish(finished.id, "completed", attempt=finished.attempt)
    store.update(request_id, heartbeat_at=LONG_AGO)
    # Its own count of attempts is past ASYNC_CODE_MAX_ATTEMPTS: judged on its own, it would fail.
    store.update(unfinished.id, heartbeat_at=LONG_AGO)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE tasks SET attempt = ? WHERE id = ?",
                   (services.settings.max_attempt_count, unfinished.id))

    recovery.recover(services, starting=False)

    assert store.get(request_id).status == PENDING
    assert store.get(unfinished.id).status == PENDING, store.get(unfinished.id).error
    assert store.get(finished.id).status == "completed"
    # A member is never claimed as a task of its own; its request is.
    assert store.claim_next("me:1").id == request_id
    again = store.start_members(store.get(request_id), ["claude", "codex"])
    assert [(m.id, m.status, m.attempt) for m in again] == [
        (finished.id, "completed", 1), (unfinished.id, RUNNING, services.settings.max_attempt_count + 1)]
