"""Side-by-side runs and `pick` under attack: option words argparse reads its own way, a cancel
that lands before the members exist, members whose own pull requests cannot be carried on, and
the runner's `test` sandbox, which runs code an agent wrote with less fencing than the agent's
own sandbox had. Each test names the weakness it shows and what would be safe."""

from __future__ import annotations


import pytest

from app.commands import read_request
from app.comments import request_fields
from app.store import PENDING, RUNNING, NewTask, Store, utcnow
from tests.conftest import REPO, WRITER, WRITER_ID, wait_until
from tests.fakes.anthropic import Final, ToolCall, Turn
from tests.payloads import issue_comment
from tests.test_requests_end_to_end import bot_comments


# --- Reading `--agents` ---------------------------------------------------------------------

@pytest.mark.parametrize("text", ["--agents=-- fix the flag", "--agents=-- -- fix it",
                                  "--agents=--"])
def test_an_agents_value_of_a_double_dash_is_a_problem_not_a_crash(text):
    """argparse reads `--agents=--` as a list (the `--` it strips), and the check of the value
    then calls str methods on it: read_request raises AttributeError, the webhook answers 500,
    and the writer hears nothing. (`--base=--`, `--model=--` and `--agent=--` crash the same
    way, with TypeError.) Safe: any option value that is not one string is a clean problem."""
    request = read_request(text)
    assert request.problem is not None and request.agents is None
    assert request_fields(text, on_pull_request=False)["problem"] is not None


# --- The store ------------------------------------------------------------------------------

def _request(store: Store, number: int = 7, comment_id: int = 42) -> str:
    task = store.record_delivery(f"g-{number}-{comment_id}", "issue_comment", "created", NewTask(
        trigger="comment", repo=REPO, installation_id=77, number=number, comment_id=comment_id,
        instruction="add a flag", requested_by=WRITER, requested_by_id=WRITER_ID,
        agents=["claude", "codex"]))
    store.update(task.id, acknowledged_at=utcnow(), status_comment_id=1000 + comment_id)
    return task.id


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "t.db")
    store.initialise()
    return store


def test_a_cancel_said_before_the_members_start_reaches_them(store):
    """`cancel` can land after the request's task is claimed and before `start_members` (the
    request checks the cancel once, then spends GitHub round trips on write access, the
    repository and its config). start_members makes the members running and not cancelled, so
    every agent runs to the end, pushes and opens its pull request, and only then does the
    request notice its own cancel. Safe: start_members carries the request's cancel to the
    members it starts (or starts none)."""
    request_id = _request(store)
    request = store.claim_next("worker-1")
    assert request is not None and request.id == request_id
    _waiting, running = store.request_cancel(REPO, 7, "maintainer")
    assert [task.id for task in running] == [request_id]

    members = store.start_members(store.get(request_id), ["claude", "codex"])

    started = [m for m in members if m.status == RUNNING and m.cancel_requested_by is None]
    assert started == [], "members started, not cancelled, under a cancelled request"


def test_members_waiting_with_their_request_do_not_fill_the_repositorys_queue(store):
    """A request handed back (a worker shutting down) waits with its members; the members are
    acknowledged rows, so `queued_for_repo` (ASYNC_CODE_MAX_QUEUE's count at admission) and
    every later task's queue position count each member as a request of its own: a four-agent
    run handed back takes five places. Safe: members never count in the queue; their request
    does, once."""
    request_id = _request(store)
    request = store.claim_next("worker-1")
    store.start_members(request, ["claude", "codex", "claude-code", "other"])
    assert store.reattempt(request_id, request.attempt)  # the worker went; all wait again
    later = _request(store, comment_id=43)

    assert [m.status for m in store.members(request_id)] == [PENDING] * 4
    assert store.queued_for_repo(REPO) == 2
    assert store.waiting_ahead_of(later) == 1


# --- End to end: the built-in agent beside `codex`, which (with no OPENAI_API_KEY) fails at
# once; the `claude` member does the work, pushes, opens its draft and has its branch tested.

INSTRUCTION = "add a version file"


def _writes(command: str, answer: str = "Add a version file\n\nIt holds the version."):
    """The `claude` member's script: one bash command in its sandbox, then its answer."""
    return [Turn([ToolCall("bash", {"command": command, "timeout": 60})]), Final(answer)]


def _side_by_side(service_factory, github, model, config: str, command: str, **settings: str):
    github.push_commit(REPO, "main", {".github/async-code.yml": config, "setup.sh": "true\n"})
    model.add_script(INSTRUCTION, _writes(command))
    service = service_factory(ASYNC_CODE_AGENTS="claude,codex", **settings).start()
    request_id = service.comment(f"@async-code --agents claude,codex {INSTRUCTION}",
                                 login=WRITER, user_id=WRITER_ID)
    return service, request_id


def _member(service, request_id, agent="claude"):
    return next((m for m in service.store.members(request_id) if m.agent == agent), None)


def test_the_test_sandboxs_setup_never_gives_the_agents_code_the_network(
        service_factory, github, model, isolated_network):
    """The `test` sandbox runs the repository's `setup` first, on ASYNC_CODE_SETUP_NETWORK, but
    on a checkout of the member's branch: whatever the agent wrote there (a setup script, a
    requirements file, a package.json's install hooks, a Makefile) now runs with the network
    the agent's own sandbox never had while it worked. Here the agent rewrites `setup.sh`, which
    the config's `setup` runs, to fetch a page from the setup network; the fetch succeeds (the
    tests, which only look for the fetched page, pass). On a real setup network that is a way
    out for the private repository's code. Safe: in the test sandbox, setup runs offline (or
    on the base commit, before the member's tree is there)."""
    config = "setup: sh setup.sh\ntest: grep -q 'served by' fetched.txt\n"
    service, request_id = _side_by_side(
        service_factory, github, model, config,
        f"echo 'wget -qO fetched.txt {isolated_network.url_by_name}' > setup.sh",
        ASYNC_CODE_SETUP_NETWORK=isolated_network.name)
    request = service.wait_for_task(request_id, timeout=180)
    member = _member(service, request_id)
    assert member.pr_number is not None, (member.status, member.error, service.logs())
    assert member.changed_files == ["setup.sh"]  # no fetched page came with its commit

    assert member.test_result != "passed", \
        "code the agent wrote fetched from the setup network in the test sandbox"
    assert request.status in ("completed", "failed")


def test_the_test_sandbox_is_held_to_the_tree_size_limit(service_factory, github, model):
    """The agent's sandbox is stopped from outside when its tree passes ASYNC_CODE_MAX_TREE_BYTES
    (runner/disk_watch.py); the `test` sandbox has no such watch, and its tree is a bind mount
    on the host's disk. The agent writes the tests' code (here the config's `test` writes 40 MB
    with a 20 MB limit, as an agent-edited Makefile or test would): nothing stops it, and the
    result is a pass. Safe: the test sandbox runs under the same DiskWatch, and a tree that
    outgrows the limit is no pass."""
    config = ("test:\n  - dd if=/dev/zero of=fill.bin bs=1M count=40\n"
              "  - test -f fill.bin\n")
    service, request_id = _side_by_side(service_factory, github, model, config,
                                        "echo 1.0 > VERSION", ASYNC_CODE_MAX_TREE_BYTES="20m")
    service.wait_for_task(request_id, timeout=180)
    member = _member(service, request_id)
    assert member.pr_number is not None, (member.status, member.error, service.logs())

    assert member.test_result != "passed", "the test sandbox wrote 40 MB past a 20 MB tree limit"


def test_a_cancel_stops_the_tests_running_on_a_members_branch(service_factory, github, model,
                                                              docker_client):
    """`cancel` (or the Cancel button) is checked by the test sandbox only between commands:
    a test command (agent-written code) runs on for its whole window, a fresh
    ASYNC_CODE_TASK_TIMEOUT of its own, before the request ends. A worker shutting down is not
    heard at all while tests run (no abort_reason reaches branch_tests.run_tests). Safe: the
    test sandbox is stopped from outside on a cancel or a shutdown, as the agent's is."""
    config = "test: sleep 30\n"
    service, request_id = _side_by_side(service_factory, github, model, config,
                                        "echo 1.0 > VERSION")
    member = wait_until(lambda: _member(service, request_id), 60, "the members", service.logs)
    # Its pull request is open (the member records it only once its tests have run), and then
    # its branch's tests start in a sandbox of their own.
    wait_until(lambda: any(pull["head"].startswith("async-code/7-claude-") for pull in github.pulls), 120,
               "the claude member's pull request", service.logs)
    wait_until(lambda: docker_client.api.containers(
        filters={"label": [f"async-code.task={member.id}"]}), 60, "the test sandbox",
        service.logs)
    cancel_id = service.comment("@async-code cancel", login=WRITER, user_id=WRITER_ID,
                                comment_id=43)
    assert service.wait_for_task(cancel_id).status == "completed"

    request = service.wait_for_task(request_id, timeout=120)
    assert request.status == "cancelled", (request.status, request.error)
    # The cancel stopped the tests' sandbox from outside: `sleep 30` did not run to its end.
    assert service.store.get(member.id).test_result == "not run: cancelled"


def test_continue_on_a_members_pull_request_carries_it_on(service_factory, github, model):
    """A member opens its pull request with a check run offering Retry and Continue (and, when
    its budget stopped it, a body saying "press Continue"); `continue` carries on "from the
    latest work pushed here (on the issue, or on the pull request it opened)". For a member
    neither works: `pushed_work_on` (and run_button) take only tasks with a status comment, and
    a member has none, so `continue` on its pull request answers "Nothing to continue" and the
    buttons do nothing at all. Safe: a member's pull request can be carried on like any other
    (or its check run offers no button that cannot work)."""
    service, request_id = _side_by_side(service_factory, github, model, "draft: true\n",
                                        "echo 1.0 > VERSION")
    service.wait_for_task(request_id, timeout=180)
    member = _member(service, request_id)
    assert member.pr_number is not None and member.commit_sha, (member.error, service.logs())
    assert github.branch_sha(REPO, member.branch) == member.commit_sha
    # Its check run offers the button.
    [pushed] = github.check_runs_of(REPO, member.commit_sha)
    assert "continue" in [action["identifier"] for action in pushed["actions"]]

    model.add_script(INSTRUCTION, [Final("Nothing more to do.")])
    payload = issue_comment("@async-code continue", number=member.pr_number, comment_id=44,
                            login=WRITER, user_id=WRITER_ID, pull_request=True)
    github.add_comment(REPO, member.pr_number, 44, WRITER, "@async-code continue")
    status, answer = service.deliver(payload)
    assert status == 202, answer
    assert service.wait_for_task(answer["task_id"]).status == "completed"

    carried = [t for t in service.store.list() if t.trigger == "continue"]
    replies = [c["body"] for c in bot_comments(github, member.pr_number)]
    assert [t.retry_of for t in carried] == [member.id], replies


def test_a_button_on_a_members_check_run_works(tmp_path):
    """A member's pushed commit gets a check run with Retry and Continue; a member has no
    status comment of its own (its request has), and `run_button` took only tasks with one as
    accepted: the press did nothing at all. Safe: a writer's Retry on a member's check run asks
    again with that member's agent."""
    from app.buttons import ButtonPress
    from runner import control

    store = Store(tmp_path / "t.db")
    store.initialise()
    request = store.record_delivery("g1", "issue_comment", "created", NewTask(
        trigger="comment", repo=REPO, installation_id=77, number=7, comment_id=42,
        instruction=INSTRUCTION, requested_by=WRITER, requested_by_id=WRITER_ID,
        agents=["claude", "codex"]))
    store.mark_queued(request.id, status_comment_id=900, check_run_id=None)
    request = store.claim_next("host:1")
    claude, _codex = store.start_members(request, ["claude", "codex"])
    store.finish(claude.id, "completed", attempt=claude.attempt, pushed_check_run_id=300,
                 commit_sha="a" * 40, pr_number=10, pr_url="https://github.com/acme/widgets/pull/10")

    pressed = store.record_delivery("g2", "check_run", "requested_action", button=ButtonPress(
        repo=REPO, installation_id=77, check_run_id=300, task_id=claude.id, action="retry",
        requested_by=WRITER, requested_by_id=WRITER_ID))
    assert pressed is not None and pressed.target_task == claude.id
    control.run_button(store.get(pressed.id), client=None, store=store)

    [retry] = [task for task in store.list() if task.retry_of == claude.id]
    assert (retry.agent, retry.group_of, retry.number, retry.command) == ("claude", None, 7, None)
