"""Side by side, end to end: `--agents claude,codex` on an issue runs the built-in agent and the
real Codex CLI at once, each in its own sandbox on its own branch, each ending in a draft pull
request; the repository's `test` commands run by the runner on each branch; one comparison
comment with both rows; then `pick` keeps one and lets the other go."""

from __future__ import annotations

import re
import signal
import time

import psycopg

from tests.conftest import REPO, WRITER, WRITER_ID, wait_until
from tests.fakes.anthropic import Final, ToolCall, Turn
from tests.fakes.openai import CustomCall, Final as OpenAIFinal, Turn as OpenAITurn
from tests.test_codex_end_to_end import MODEL as CODEX_MODEL, codex_service, openai_model  # noqa: F401
from tests.test_end_to_end import INSTRUCTION, NEW_MAIN, OLD_MAIN
from tests.test_reattempts import GATED, let_go, sandboxes
from tests.test_requests_end_to_end import bot_comments

# The repository's tests: does the CLI know `--version`? Claude's change passes, Codex's (a `-V`
# flag) does not, so the comparison shows one of each.
CONFIG = """\
test:
  - test -f cli.py
  - grep -q -- '"--version"' cli.py || { echo 'cli.py has no --version flag'; exit 1; }
"""
CODEX_PATCH = '''*** Begin Patch
*** Update File: cli.py
@@
 def main(argv):
+    if "-V" in argv:
+        print("widgets 1.0.0")
+        return 0
     print("hello from widgets")
*** End Patch
'''
CLAUDE_ANSWER = "Add a --version flag to the CLI\n\nThe CLI prints its version for --version."
CODEX_ANSWER = "Add a -V flag to the CLI\n\nThe CLI prints its version for -V."


def claude_script():
    return [
        Turn([ToolCall("edit_file", {"command": "str_replace", "path": "cli.py", "old_str": OLD_MAIN,
                                     "new_str": NEW_MAIN}, expect_error=False)]),
        Final(CLAUDE_ANSWER),
    ]


def codex_script():
    return [OpenAITurn([CustomCall("apply_patch", CODEX_PATCH,
                                   expect="Success. Updated the following files")]),
            OpenAIFinal(CODEX_ANSWER)]


def test_two_agents_side_by_side_then_pick_one(codex_service, github, model, openai_model):  # noqa: F811
    github.push_commit(REPO, "main", {".github/async-code.yml": CONFIG})
    model.add_script(INSTRUCTION, claude_script())
    openai_model.add_script(INSTRUCTION, codex_script())
    service = codex_service(ASYNC_CODE_AGENT_MODELS=f"codex={CODEX_MODEL}",
                            ASYNC_CODE_TASK_TIMEOUT="180",
                            ASYNC_CODE_PUBLIC_URL="https://async-code.example")
    request_id = service.comment(f"@async-code --agents claude,codex {INSTRUCTION}",
                                 login=WRITER, user_id=WRITER_ID)
    request = service.wait_for_task(request_id, timeout=240)
    assert request.status == "completed", (request.error, service.logs())

    # One member per agent, each finished on its own branch with a draft pull request.
    members = {member.agent: member for member in service.store.members(request_id)}
    assert sorted(members) == ["claude", "codex"]
    for agent, member in members.items():
        assert member.status == "completed", (agent, member.error, service.logs())
        assert member.group_of == request_id
        assert member.branch == f"async-code/7-{agent}-{member.id[:8]}"
        assert github.branch_sha(REPO, member.branch) == member.commit_sha
    pulls = {pull["head"]: pull for pull in github.pulls}
    assert set(pulls) == {member.branch for member in members.values()}
    assert all(pull["draft"] for pull in pulls.values())
    assert pulls[members["claude"].branch]["title"] == "Add a --version flag to the CLI"
    assert pulls[members["codex"].branch]["title"] == "Add a -V flag to the CLI"

    # The runner ran the repository's tests on each branch: claude's pass, codex's fail.
    assert (members["claude"].test_result, members["codex"].test_result) == ("passed", "failed")
    assert (members["claude"].test_output, members["codex"].test_output) == (
        None, "cli.py has no --version flag\n")
    assert members["claude"].turns == 2 and members["codex"].turns >= 1

    # Exactly one comparison comment, with a row per agent; the status comment points at it.
    comparisons = [c for c in bot_comments(github, 7) if "compared 2 agents" in c["body"]]
    assert len(comparisons) == 1, [c["body"] for c in bot_comments(github, 7)]
    body = comparisons[0]["body"]
    claude_row = next(line for line in body.splitlines() if line.startswith("| `claude`"))
    codex_row = next(line for line in body.splitlines() if line.startswith("| `codex`"))
    assert "✅ pass" in claude_row and f"#{members['claude'].pr_number}" in claude_row
    assert "❌ fail" in codex_row and f"#{members['codex'].pr_number}" in codex_row
    assert re.search(r"\| 1 \| \+3 −0 \|", claude_row), claude_row
    for row, member in ((claude_row, members["claude"]), (codex_row, members["codex"])):
        assert f"[transcript](https://async-code.example/artifacts/{member.id}/" in row, row
    assert request.comparison_comment_id == comparisons[0]["id"]
    status = github.comments[request.status_comment_id]["body"]
    assert "ran 2 agents side by side: 2 of 2 finished" in status
    # What codex's failing test printed, as code; claude's passed, so nothing of it.
    assert ("<summary>What `codex`'s failing test printed, at its end</summary>\n\n```\n"
            "cli.py has no --version flag\n\n```") in body
    assert "`claude`'s failing test" not in body
    assert f"issuecomment-{comparisons[0]['id']}" in status

    # The issue's slot was the group's: no member was ever claimed as a task of its own.
    assert all(member.comment_id is None and member.status_comment_id is None
               for member in members.values())

    # Pick claude's pull request: ready for review; codex's is closed and its branch deleted.
    kept, dropped = members["claude"], members["codex"]
    pick_id = service.comment(f"@async-code pick #{kept.pr_number}", login=WRITER,
                              user_id=WRITER_ID, comment_id=43)
    assert service.wait_for_task(pick_id).status == "completed"
    wait_until(lambda: github.branch_sha(REPO, dropped.branch) is None, 30,
               "the dropped branch to go", service.logs)
    pulls = {pull["number"]: pull for pull in github.pulls}
    assert pulls[kept.pr_number]["draft"] is False and pulls[kept.pr_number]["state"] == "open"
    assert pulls[dropped.pr_number]["state"] == "closed"
    assert github.branch_sha(REPO, kept.branch) == kept.commit_sha
    answer = bot_comments(github, 7)[-1]["body"]
    assert f"Picked #{kept.pr_number}" in answer and f"closed #{dropped.pr_number}" in answer


def test_pick_of_a_pull_request_no_run_opened_changes_nothing(service, github):
    pick_id = service.comment("@async-code pick 7", login=WRITER, user_id=WRITER_ID)
    assert service.wait_for_task(pick_id).status == "completed"
    answer = bot_comments(github, 7)[-1]["body"]
    assert "Nothing picked: #7 is not a pull request a side-by-side run on this issue opened." in answer
    assert github.pulls == []


def test_on_postgresql_the_group_runs_at_once_in_one_slot_and_holds_the_issue(
        service_factory, migrated_postgres_url, agent_tools_dir, bash_sandbox_image, github, model,
        openai_model):  # noqa: F811
    """One worker slot: the members still run at the same time (claude's conversation waits, in
    the fake, until Codex has called its model: were the members run one after the other, claude
    would fail), and a second request on the issue waits for the whole group."""
    def codex_has_called(_output: str) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(request["path"] == "/v1/responses" for request in openai_model.requests):
                return True
            time.sleep(0.1)
        return False

    model.add_script(INSTRUCTION, [Turn([ToolCall("bash", {"command": "true"},
                                                  expect=codex_has_called)]), *claude_script()])
    openai_model.add_script(INSTRUCTION, codex_script())
    model.add_script("also add a changelog", [
        Turn([ToolCall("edit_file", {"command": "create", "path": "CHANGES.md",
                                     "file_text": "# Changes\n"}, expect_error=False)]),
        Final("Add a changelog\n\nStarted one.")])
    service = service_factory(
        DATABASE_URL=migrated_postgres_url, ASYNC_CODE_AGENTS="claude,codex",
        ASYNC_CODE_ALLOWED_MODELS=f"claude-sonnet-4-6,{CODEX_MODEL}",
        ASYNC_CODE_AGENT_MODELS=f"codex={CODEX_MODEL}", OPENAI_API_KEY=openai_model.api_key,
        OPENAI_BASE_URL=openai_model.base_url, ASYNC_CODE_AGENT_TOOLS=str(agent_tools_dir),
        ASYNC_CODE_SANDBOX_IMAGE=bash_sandbox_image, ASYNC_CODE_SANDBOX_MEMORY="1g",
        ASYNC_CODE_TASK_TIMEOUT="180").start(workers=1)
    request_id = service.comment(f"@async-code --agents claude,codex {INSTRUCTION}",
                                 login=WRITER, user_id=WRITER_ID, comment_id=1)
    later_id = service.comment("@async-code also add a changelog", login=WRITER,
                               user_id=WRITER_ID, comment_id=2)
    request = service.wait_for_task(request_id, timeout=240)
    assert request.status == "completed", (request.error, service.logs())
    later = service.wait_for_task(later_id, timeout=120)
    assert later.status == "completed", (later.error, service.logs())

    members = service.store.members(request_id)
    assert {member.agent: member.status for member in members} == {"claude": "completed",
                                                                   "codex": "completed"}
    # The issue's lock held the later request back until the group had ended, members and all.
    assert later.started_at >= max(member.finished_at for member in members)
    assert later.started_at >= request.finished_at
    # The queue knew only the request's jobs: members are run by their request, not claimed.
    with psycopg.connect(migrated_postgres_url) as db:
        jobs = db.execute("SELECT args->>'task_id' FROM async_code.procrastinate_jobs").fetchall()
    assert {task_id for (task_id,) in jobs} == {request_id, later_id}
    assert len([c for c in bot_comments(github, 7) if "compared 2 agents" in c["body"]]) == 1
    service.stop_all()


def test_the_configs_compare_runs_side_by_side_unless_the_request_names_an_agent(
        codex_service, github, model, openai_model):  # noqa: F811
    github.push_commit(REPO, "main", {".github/async-code.yml": "compare: [codex, claude]\n"})
    model.add_script(INSTRUCTION, claude_script())
    openai_model.add_script(INSTRUCTION, codex_script())
    model.add_script("only claude please", [
        Turn([ToolCall("edit_file", {"command": "create", "path": "NOTES.md",
                                     "file_text": "notes\n"}, expect_error=False)]),
        Final("Add notes\n\nAdded notes.")])
    service = codex_service(ASYNC_CODE_AGENT_MODELS=f"codex={CODEX_MODEL}")
    request_id = service.comment(f"@async-code {INSTRUCTION}", login=WRITER, user_id=WRITER_ID)
    request = service.wait_for_task(request_id, timeout=240)
    assert request.status == "completed", (request.error, service.logs())
    # The config's order; kept with the request, so a re-attempt or a retry runs the same.
    assert request.agents == ["codex", "claude"]
    members = service.store.members(request_id)
    assert [(m.agent, m.status, m.test_result) for m in members] == [
        ("codex", "completed", None), ("claude", "completed", None)]
    [comparison] = [c for c in bot_comments(github, 7) if "compared 2 agents" in c["body"]]
    assert comparison["body"].index("| `codex`") < comparison["body"].index("| `claude`")

    single_id = service.comment("@async-code --agent claude only claude please", login=WRITER,
                                user_id=WRITER_ID, comment_id=43)
    single = service.wait_for_task(single_id, timeout=120)
    assert single.status == "completed", (single.error, service.logs())
    assert single.agent == "claude" and service.store.members(single_id) == []
    assert single.branch == f"async-code/7-{single_id[:8]}" and len(github.pulls) == 3


def test_a_worker_shutting_down_hands_the_group_back_and_another_finishes_it(
        service_factory, migrated_postgres_url, github, model, docker_client):
    """SIGTERM to the worker running a side-by-side request: its unfinished member goes back
    with it, the member that had ended stays as it ended, and another worker runs only the one
    left; one comparison follows."""
    model.add_script("add a version module", GATED)
    receiver = service_factory(DATABASE_URL=migrated_postgres_url, ASYNC_CODE_AGENTS="claude,codex",
                               ASYNC_CODE_LEASE_SECONDS="3").start(workers=0)
    try:
        stopping = receiver.start_worker(ASYNC_CODE_SHUTDOWN_GRACE="1")
        # No OPENAI_API_KEY: the codex member fails at once; the claude member waits in its sandbox.
        request_id = receiver.comment("@async-code --agents claude,codex add a version module",
                                      login=WRITER, user_id=WRITER_ID)
        members = wait_until(lambda: len(receiver.store.members(request_id)) == 2
                             and receiver.store.members(request_id), 60, "the members",
                             stopping.logs)
        claude = next(member for member in members if member.agent == "claude")
        wait_until(lambda: sandboxes(docker_client, claude.id, 1, running=True), 60,
                   "the claude member's sandbox", stopping.logs)
        codex = wait_until(lambda: (m := receiver.store.get(
            next(member.id for member in members if member.agent == "codex"))).status == "failed"
            and m, 60, "the codex member to fail", stopping.logs)
        assert "OPENAI_API_KEY" in codex.error

        assert stopping.stop(signal.SIGTERM) == 0
        assert receiver.task(request_id).status == "pending"
        assert receiver.store.get(claude.id).status == "pending"

        finishing = receiver.start_worker()
        let_go(docker_client, claude.id, 2, finishing.logs)
        request = receiver.wait_for_task(request_id, timeout=120)
        assert request.status == "completed", (request.error, finishing.logs())
        assert (request.attempt, request.handed_back) == (2, 1)
        after = {member.agent: member for member in receiver.store.members(request_id)}
        assert (after["claude"].status, after["claude"].attempt) == ("completed", 2)
        assert after["codex"] == codex  # ended before the hand-back: not run again
        [pull] = github.pulls
        assert pull["draft"] and pull["head"] == after["claude"].branch
        assert len([c for c in bot_comments(github, 7) if "compared 2 agents" in c["body"]]) == 1
    finally:
        for member in receiver.store.members(request_id) if "request_id" in locals() else []:
            for sandbox in sandboxes(docker_client, member.id):
                docker_client.api.remove_container(sandbox["Id"], force=True)
        receiver.stop_all()


def test_the_tests_setup_runs_online_on_the_start_and_the_members_files_come_in_offline(
        service_factory, github, model, isolated_network):
    """With ASYNC_CODE_SETUP_NETWORK, the test sandbox's `setup` reaches the network as the
    agent's did, on the files the member started from (its own are not there yet: setup.sh
    checks), keeps what it fetched, and the member's files (its new one, its deletion) are in
    the tree when the tests run."""
    setup = (f"wget -qO fetched.txt {isolated_network.url_by_name}\n"
             "test ! -e VERSION  # the member's file is not here while setup is online\n")
    github.push_commit(REPO, "main", {
        ".github/async-code.yml": "setup: sh setup.sh\ntest:\n  - grep -q 'served by' fetched.txt\n"
                                  "  - test \"$(cat VERSION)\" = 1.0\n  - test ! -e README.md\n",
        "setup.sh": setup})
    model.add_script(INSTRUCTION, [
        Turn([ToolCall("bash", {"command": "echo 1.0 > VERSION && rm README.md && rm -f fetched.txt"},
                       expect="exit code 0")]),
        Final("Add a VERSION file\n\nAnd drop the README.")])
    service = service_factory(ASYNC_CODE_AGENTS="claude,codex",
                              ASYNC_CODE_SETUP_NETWORK=isolated_network.name).start()
    request_id = service.comment(f"@async-code --agents claude,codex {INSTRUCTION}",
                                 login=WRITER, user_id=WRITER_ID)
    service.wait_for_task(request_id, timeout=180)
    claude = next(m for m in service.store.members(request_id) if m.agent == "claude")
    assert claude.status == "completed", (claude.error, service.logs())
    assert sorted(claude.changed_files) == ["README.md", "VERSION"]
    assert claude.test_result == "passed", (claude.test_result, service.logs())
