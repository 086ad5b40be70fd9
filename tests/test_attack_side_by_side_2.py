"""Side-by-side runs under attack, second round: what happens around a group's lifecycle (a
cancel before its worker dies on PostgreSQL, the one comparison when its post fails, a cancel
after members pushed), what `continue` on the issue carries on once a member was picked, and
the request's check run. Each test names the weakness it shows and what would be safe."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import psycopg
import pytest

from app.postgres_store import RUN_QUEUE, PostgresStore
from app.settings import Settings
from app.store import CANCELLED, COMPLETED, FINISHED, NewTask, Store
from runner import comparison, control, queue, side_by_side, status
from runner.github import GitHubApp, GitHubError
from runner.sandbox import SandboxUser
from runner.services import Services
from tests.conftest import APP_ID, INSTALLATION_ID, REPO, WRITER, WRITER_ID, wait_until
from tests.test_attack_side_by_side import _member, _side_by_side
from tests.test_requests_end_to_end import bot_comments


def _asked(number: int = 7, comment_id: int = 42, *, command: str | None = None,
           agents: list[str] | None = None) -> NewTask:
    return NewTask(trigger="comment", repo=REPO, installation_id=INSTALLATION_ID, number=number,
                   comment_id=comment_id, instruction="" if command else "add a flag",
                   requested_by=WRITER, requested_by_id=WRITER_ID, command=command,
                   agents=agents)


def _running_request(store, *, status_comment_id: int = 1042):
    """A `--agents claude,codex` request, acknowledged and started (SQLite)."""
    task = store.record_delivery("g-request", "issue_comment", "created",
                                 _asked(agents=["claude", "codex"]))
    assert store.mark_queued(task.id, status_comment_id=status_comment_id, check_run_id=None)
    request = store.claim_next("worker-1")
    assert request is not None and request.id == task.id
    return request


@pytest.fixture
def sqlite_store(tmp_path):
    store = Store(tmp_path / "t.db")
    store.initialise()
    return store


# --- `continue` on the issue after `pick` ---------------------------------------------------

class _Pulls:
    """A RepoClient as far as `continue` reads it: each pull request's head and state."""

    def __init__(self, pulls: dict[int, dict]):
        self.pulls = pulls

    def pull_request(self, number: int) -> dict:
        return self.pulls[number]


def test_continue_on_the_issue_after_a_pick_carries_on_the_picked_pull_request(sqlite_store):
    """`continue` on an issue carries on "the last task that pushed here": after a side-by-side
    run that is whichever member was made last (the last agent named), whatever was picked.
    Here `pick 10` kept claude's #10 and closed codex's #11 (its branch deleted); `continue`
    on the issue then records a task on the closed #11 (its head, on GitHub, is still the
    commit codex pushed, which is all `_can_continue` looks at), which fails when it runs,
    and the picked work is never carried on. Safe: after a side-by-side run, `continue` on
    the issue carries on the picked pull request, or says to ask on the member's own."""
    store = sqlite_store
    request = _running_request(store)
    members = store.start_members(request, ["claude", "codex"])
    for member, number in zip(members, (10, 11)):
        store.finish(member.id, COMPLETED, attempt=member.attempt, commit_sha=f"{number:040x}",
                     pr_number=number, pr_url=f"https://github.com/{REPO}/pull/{number}")
    store.finish(request.id, COMPLETED, attempt=request.attempt)
    # `pick 10`: #10 ready for review, #11 closed and its branch deleted.
    client = _Pulls({10: {"state": "open", "draft": False, "head": {"sha": f"{10:040x}"}},
                     11: {"state": "closed", "draft": True, "head": {"sha": f"{11:040x}"}}})

    said = store.record_delivery("g-continue", "issue_comment", "created",
                                 _asked(comment_id=44, command="continue"))
    control._continue(said, client=client, store=store, where="issue")

    carried = [task for task in store.list() if task.trigger == "continue"]
    assert [task.number for task in carried] in ([], [10]), \
        f"`continue` on the issue carried on #{carried[0].number}, closed by `pick 10`"


# --- The one comparison -----------------------------------------------------------------------

class _Comments:
    def __init__(self, fail: bool, on_the_issue: list | None = None):
        self.fail, self.posted = fail, []
        self.on_the_issue = on_the_issue if on_the_issue is not None else []

    def comment(self, number: int, body: str) -> int:
        if self.fail:
            raise GitHubError("502 Bad Gateway", status=502)
        self.posted.append((number, body))
        self.on_the_issue.append({"id": 5000 + len(self.on_the_issue), "body": body,
                                  "user": {"login": "async-code[bot]"}})
        return self.on_the_issue[-1]["id"]

    def issue_comments(self, number: int, *, limit: int) -> list:
        return list(self.on_the_issue)


def _attempt_of(store, task, client):
    """What side_by_side._post_comparison reads of the request's _TaskRun."""
    return SimpleNamespace(
        task=task, attempt=task.attempt, client=client, github_host="github.com",
        services=SimpleNamespace(store=store, settings=Settings(), artifacts=None),
        record=lambda **values: store.update(task.id, attempt=task.attempt, **values),
        require_current=lambda: store.require_current(task.id, task.attempt))


def _table(task, members) -> str:
    return comparison.comment(task.id, members, transcripts={}, mention="@async-code")


def test_a_comparison_whose_post_failed_is_posted_by_the_next_attempt(sqlite_store):
    """`mark_compared` is stored before the comment is posted, and never taken back: when the
    post fails (GitHub answers 502, or times out) or the worker dies between the two, no
    attempt ever posts the comparison, the only place with the table and how to `pick`
    (an issue's request has no check run to carry it). The request's status comment still
    says "See the comparison below". Safe: a comparison that was not posted is posted by the
    next attempt (the mark kept only with the comment's id, or the issue searched for the
    request's own comparison before posting)."""
    store = sqlite_store
    request = _running_request(store)
    for member in store.start_members(request, ["claude", "codex"]):
        store.finish(member.id, COMPLETED, attempt=member.attempt)
    members = store.members(request.id)

    failing = _Comments(fail=True)
    assert side_by_side._post_comparison(_attempt_of(store, request, failing),
                                         _table(request, members)) is None
    # The worker stops before the request ends; its next attempt runs no member again.
    assert store.reattempt(request.id, request.attempt)
    again = store.claim_next("worker-2")
    assert again is not None and again.id == request.id and again.attempt == 2

    working = _Comments(fail=False)
    side_by_side._post_comparison(_attempt_of(store, again, working), _table(again, members))
    assert [number for number, _body in working.posted] == [7], \
        "the comparison was never posted: the failed attempt's mark stopped every later one"


def test_a_comparison_posted_by_an_attempt_that_died_before_recording_it_is_not_posted_again(
        sqlite_store):
    """The worker posted the comparison and died before recording the comment: the next
    attempt finds it on the issue (by the mark hidden in it) and records it."""
    store = sqlite_store
    request = _running_request(store)
    for member in store.start_members(request, ["claude", "codex"]):
        store.finish(member.id, COMPLETED, attempt=member.attempt)
    members = store.members(request.id)
    issue: list = []
    first = _Comments(fail=False, on_the_issue=issue)
    assert store.mark_compared(request.id, request.attempt)
    first.comment(7, _table(request, members))  # ... and the worker died here
    assert store.reattempt(request.id, request.attempt)
    again = store.claim_next("worker-2")
    second = _Comments(fail=False, on_the_issue=issue)
    side_by_side._post_comparison(_attempt_of(store, again, second), _table(again, members))
    assert second.posted == [] and len(issue) == 1
    assert store.get(request.id).comparison_comment_id == issue[0]["id"]
    # Once recorded, a later attempt posts nothing and points at that comment.
    assert store.reattempt(request.id, again.attempt)
    third = store.claim_next("worker-3")
    url = side_by_side._post_comparison(_attempt_of(store, third, second), _table(third, members))
    assert url.endswith(f"/issues/7#issuecomment-{issue[0]['id']}") and len(issue) == 1


# --- PostgreSQL: a cancelled request whose worker died ---------------------------------------

@pytest.fixture
def pg_services(migrated_postgres_url, github, app_key):
    with PostgresStore(migrated_postgres_url) as store:
        store.initialise()
        github_app = GitHubApp(app_id=str(APP_ID), private_key=app_key[0],
                               api_url=github.base_url, slug="async-code")
        yield Services(settings=Settings(lease_seconds="5", max_attempts="2"), store=store,
                       github=github_app, docker=None, anthropic=None, instance="attack-2",
                       sandbox=SandboxUser("61000:61000", (61000, 61000)))


def test_on_postgresql_a_cancelled_request_whose_worker_died_ends_cancelled(
        pg_services, github, migrated_postgres_url):
    """`cancel` marks a running side-by-side request and its members; if its worker then dies
    (before it noticed), the stalled-job pass on PostgreSQL re-attempts the request as if
    nothing was said: it goes back to waiting with a new run job and "re-attempt 2 of 2" in
    its status comment. That job never starts it (`start_attempt` refuses a cancelled task) and
    ends there, so the request and its members wait for ever: the status comment promises a
    re-attempt, the request counts against ASYNC_CODE_MAX_QUEUE for good, and a second
    `cancel` finds nothing (it skips tasks already asked to stop). SQLite's recovery ends such
    a task as cancelled. Safe: the stalled pass ends a cancelled request (and its members) as
    cancelled, and a run job that finds its task cancelled ends it."""
    services, store = pg_services, pg_services.store
    github.add_issue(REPO, 7)
    task = store.record_delivery("g-pg", "issue_comment", "created",
                                 _asked(agents=["claude", "codex"]))
    client = services.github.repo_client(INSTALLATION_ID, REPO,
                                         {"issues": "write", "metadata": "read"})
    comment_id = client.comment(7, status.queued(task.id, 1))
    assert store.mark_queued(task.id, status_comment_id=comment_id, check_run_id=None)
    app = queue.build_app(services)

    async def scenario():
        async with app.open_async():
            manager = app.job_manager
            worker = await manager.register_worker()
            job = await manager.fetch_job(queues=[RUN_QUEUE], worker_id=worker)
            assert job.task_kwargs == {"task_id": task.id}
            request = store.start_attempt(task.id, f"elsewhere:{worker}")
            store.start_members(request, ["claude", "codex"])
            _waiting, running = store.request_cancel(REPO, 7, "maintainer")
            assert task.id in [t.id for t in running]
            # The worker dies before it notices the cancel.
            with psycopg.connect(migrated_postgres_url) as db:
                db.execute("UPDATE async_code.procrastinate_workers SET last_heartbeat = "
                           "now() - interval '6 seconds' WHERE id = %s", (worker,))
            await queue.reattempt_stalled(manager, services)
            # Another worker takes whatever job the task now has, if any, and runs it.
            other = await manager.register_worker()
            again = await manager.fetch_job(queues=[RUN_QUEUE], worker_id=other)
            if again is not None:
                assert again.task_kwargs == {"task_id": task.id}
                queue.run_task(services, task.id, abort_reason=lambda: None)

    asyncio.run(scenario())
    ended = store.get(task.id)
    members = store.members(task.id)
    assert ended.status in FINISHED and all(m.status in FINISHED for m in members), \
        (ended.status, [m.status for m in members], github.comments[comment_id]["body"])
    assert ended.status == CANCELLED
    assert {m.status for m in members} == {CANCELLED}
    assert "cancelled by @maintainer" in github.comments[comment_id]["body"]


def test_on_postgresql_a_run_job_that_finds_its_task_cancelled_ends_it(pg_services, github):
    """The task was cancelled after a worker let it go (it waits, with a run job, and a cancel
    flag): the job that finds nothing to run ends it cancelled instead of leaving it waiting."""
    services, store = pg_services, pg_services.store
    github.add_issue(REPO, 7)
    task = store.record_delivery("g-pg2", "issue_comment", "created", _asked())
    client = services.github.repo_client(INSTALLATION_ID, REPO,
                                         {"issues": "write", "metadata": "read"})
    comment_id = client.comment(7, status.queued(task.id, 1))
    assert store.mark_queued(task.id, status_comment_id=comment_id, check_run_id=None)
    request = store.start_attempt(task.id, "elsewhere:1")
    store.request_cancel(REPO, 7, "maintainer")
    # Its worker handed it back before it heard of the cancel.
    store.update(task.id, attempt=request.attempt, status="pending", claimed_by=None)
    queue.run_task(services, task.id, abort_reason=lambda: None)
    assert store.get(task.id).status == CANCELLED
    assert "cancelled by @maintainer" in github.comments[comment_id]["body"]


# --- End to end: the built-in agent beside `codex`, which (with no OPENAI_API_KEY) fails at
# once; the `claude` member does the work, pushes and opens its draft (the harness of
# tests/test_attack_side_by_side.py).

def test_a_cancel_after_a_member_opened_its_pull_request_does_not_say_nothing_was_pushed(
        service_factory, github, model, docker_client):
    """A side-by-side request cancelled after one of its members pushed its branch and opened
    its draft pull request ends like a task that never pushed: its status comment says
    "cancelled …; nothing was pushed", no comparison is posted, and the member's draft stays
    open, unmentioned, on a branch nobody is told about. The writer who cancelled reads that
    nothing reached the repository. Safe: a cancelled request says which members had already
    pushed and opened what (or posts the comparison of what ended)."""
    service, request_id = _side_by_side(service_factory, github, model, "test: sleep 30\n",
                                        "echo 1.0 > VERSION")
    member = wait_until(lambda: _member(service, request_id), 60, "the members", service.logs)
    wait_until(lambda: any(pull["head"] == service.store.get(member.id).branch
                           for pull in github.pulls), 120,
               "the claude member's pull request", service.logs)
    wait_until(lambda: docker_client.api.containers(
        filters={"label": [f"async-code.task={member.id}"]}), 60, "the test sandbox",
        service.logs)
    cancel_id = service.comment("@async-code cancel", login=WRITER, user_id=WRITER_ID,
                                comment_id=43)
    assert service.wait_for_task(cancel_id).status == "completed"
    request = service.wait_for_task(request_id, timeout=120)
    assert request.status == "cancelled", (request.status, request.error)
    pushed = service.store.get(member.id)
    assert pushed.pr_number is not None and github.branch_sha(REPO, pushed.branch) is not None

    said = github.comments[request.status_comment_id]["body"]
    assert "nothing was pushed" not in said, said
    assert f"#{pushed.pr_number}" in said or any(
        f"#{pushed.pr_number}" in c["body"] for c in bot_comments(github, 7)), \
        "the member's open pull request is named nowhere on the issue"
