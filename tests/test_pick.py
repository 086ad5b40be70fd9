"""`@async-code pick N` (runner/pick.py) against the loopback fake GitHub and a real SQLite store:
a side-by-side run's members really pushed their branches and opened draft pull requests; the
pick marks one ready and lets the others go, deleting only branches that still hold what their
member pushed, and refuses, changing nothing, whatever is not a finished run's pull request."""

from __future__ import annotations

import pytest

from app.store import COMPLETED, FAILED, NewTask, Store
from runner.github import PICK_PERMISSIONS, GitHubApp
from runner.pick import pick
from tests.conftest import APP_ID, INSTALLATION_ID, REPO

AGENTS = ["claude", "codex", "aider"]


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "t.db")
    store.initialise()
    return store


@pytest.fixture
def app(github, app_key):
    return GitHubApp(app_id=str(APP_ID), private_key=app_key[0], api_url=github.base_url,
                     slug="async-code")


@pytest.fixture
def client(app):
    return app.repo_client(INSTALLATION_ID, REPO, PICK_PERMISSIONS)


def side_by_side_run(store, github, number=1, agents=AGENTS, *, finish=True, without_pr=()):
    """A side-by-side request on issue `number` whose members each pushed a branch and opened a
    draft pull request (but those in `without_pr`, which failed); the request ended unless
    `finish` is False. Returns the request and its members as stored."""
    github.add_issue(REPO, number)
    request = store.record_delivery(f"g{number}", "issue_comment", "created", NewTask(
        trigger="comment", repo=REPO, installation_id=INSTALLATION_ID, number=number,
        comment_id=100 + number, instruction="add a flag", requested_by="alice",
        requested_by_id=9, agents=list(agents)))
    store.mark_queued(request.id, status_comment_id=200 + number, check_run_id=None)
    request = store.claim_next("host:1")
    for member in store.start_members(request, list(agents)):
        if member.agent in without_pr:
            store.finish(member.id, FAILED, attempt=member.attempt, error="the agent crashed")
            continue
        branch = f"async-code/{number}-{member.agent}-{member.id[:8]}"
        sha = github.push_commit(REPO, branch, {f"{member.agent}.txt": f"by {member.agent}\n"},
                                 parent_branch="main")
        pr_number = github.add_pull(REPO, head=branch, draft=True, user="async-code[bot]",
                                    title=f"Add a flag ({member.agent})")
        store.finish(member.id, COMPLETED, attempt=member.attempt, branch=branch,
                     commit_sha=sha, pr_number=pr_number,
                     pr_url=f"https://github.com/{REPO}/pull/{pr_number}")
    if finish:
        store.finish(request.id, COMPLETED, attempt=request.attempt)
    return store.get(request.id), store.members(request.id)


def pick_command(store, number, picked, comment_id=None):
    """The `pick` command task as intake records it, on issue `number`."""
    return store.record_delivery(f"pick-{number}-{picked}-{comment_id}", "issue_comment",
                                 "created", NewTask(
        trigger="comment", repo=REPO, installation_id=INSTALLATION_ID, number=number,
        comment_id=comment_id or 10_000 * number + picked, instruction=f"pick {picked}",
        requested_by="alice", requested_by_id=9, command="pick", picked_pr=picked))


def seen(github, client, members):
    """Each member's pull request and branch as GitHub has them now."""
    found = {}
    for member in members:
        if member.pr_number is None:
            continue
        pull = client.pull_request(member.pr_number)
        found[member.agent] = (pull["state"], pull["draft"], github.branch_sha(REPO, member.branch))
    return found


def as_pushed(members):
    return {m.agent: ("open", True, m.commit_sha) for m in members if m.pr_number}


def test_picking_one_marks_it_ready_and_lets_the_others_go(store, github, client):
    _, members = side_by_side_run(store, github)
    claude, codex, aider = members

    answer = pick(pick_command(store, 1, codex.pr_number), store=store, github=None,
                  client=client)

    assert seen(github, client, members) == {
        "claude": ("closed", True, None), "codex": ("open", False, codex.commit_sha),
        "aider": ("closed", True, None)}
    assert answer.splitlines() == [
        f"✅ Picked #{codex.pr_number} (`codex`): it is ready for review.",
        f"- closed #{claude.pr_number} and deleted its branch `{claude.branch}`.",
        f"- closed #{aider.pr_number} and deleted its branch `{aider.branch}`."]
    assert github.branch_sha(REPO, "main") is not None


def test_a_member_without_a_pull_request_is_left_out(store, github, client):
    _, members = side_by_side_run(store, github, without_pr=("codex",))
    claude, codex, aider = members

    answer = pick(pick_command(store, 1, aider.pr_number), store=store, github=None,
                  client=client)

    assert seen(github, client, members) == {"claude": ("closed", True, None),
                                             "aider": ("open", False, aider.commit_sha)}
    assert len(answer.splitlines()) == 2 and "codex" not in answer


def test_picking_the_same_one_again_changes_nothing_more(store, github, client):
    _, members = side_by_side_run(store, github, agents=["claude", "codex"])
    claude, codex = members
    pick(pick_command(store, 1, claude.pr_number), store=store, github=None, client=client)
    after_first = seen(github, client, members)

    answer = pick(pick_command(store, 1, claude.pr_number, comment_id=5), store=store,
                  github=None, client=client)

    assert seen(github, client, members) == after_first
    assert answer.splitlines() == [
        f"✅ Picked #{claude.pr_number} (`claude`): it was already ready for review.",
        f"- #{codex.pr_number} was already closed; its branch `{codex.branch}` was already gone."]


@pytest.mark.parametrize("picked", [1, 999, "someone's"], ids=["the-issue", "unknown", "not-a-run"])
def test_a_number_that_is_not_a_members_pull_request_picks_nothing(store, github, client, picked):
    _, members = side_by_side_run(store, github)
    if picked == "someone's":  # a pull request someone else opened
        picked = github.add_pull(REPO, head="carol/feature", files={"c.txt": "c\n"}, draft=True)
    before = seen(github, client, members)

    answer = pick(pick_command(store, 1, picked), store=store, github=None, client=client)

    assert answer == (f"Nothing picked: #{picked} is not a pull request a side-by-side run on "
                      "this issue opened.")
    assert seen(github, client, members) == before == as_pushed(members)


def test_another_issues_run_cannot_be_picked_from_here(store, github, client):
    _, here = side_by_side_run(store, github, 1, agents=["claude", "codex"])
    _, there = side_by_side_run(store, github, 2, agents=["claude", "codex"])

    answer = pick(pick_command(store, 1, there[1].pr_number), store=store, github=None,
                  client=client)

    assert answer.startswith(f"Nothing picked: #{there[1].pr_number} is not a pull request a "
                             "side-by-side run on this issue opened")
    assert seen(github, client, here) == as_pushed(here)
    assert seen(github, client, there) == as_pushed(there)
    # On its own issue it is picked, and only that run's pull requests go.
    pick(pick_command(store, 2, there[1].pr_number), store=store, github=None, client=client)
    assert seen(github, client, here) == as_pushed(here)
    assert seen(github, client, there) == {"claude": ("closed", True, None),
                                           "codex": ("open", False, there[1].commit_sha)}


def test_nothing_is_picked_while_the_run_is_still_going(store, github, client):
    request, members = side_by_side_run(store, github, finish=False)

    answer = pick(pick_command(store, 1, members[0].pr_number), store=store, github=None,
                  client=client)

    assert answer.startswith("Nothing picked yet: the side-by-side run is still going")
    assert seen(github, client, members) == as_pushed(members)
    # Once it has ended, the same pick goes through.
    store.finish(request.id, COMPLETED, attempt=request.attempt)
    pick(pick_command(store, 1, members[0].pr_number, comment_id=5), store=store, github=None,
         client=client)
    assert seen(github, client, members)["claude"] == ("open", False, members[0].commit_sha)


def test_a_closed_pull_request_is_not_picked(store, github, client):
    _, members = side_by_side_run(store, github)
    github.close_pull(REPO, members[1].pr_number)
    before = seen(github, client, members)

    answer = pick(pick_command(store, 1, members[1].pr_number), store=store, github=None,
                  client=client)

    assert answer == (f"Nothing picked: #{members[1].pr_number} is closed. Reopen it first to "
                      "pick it.")
    assert seen(github, client, members) == before
    assert before["claude"] == ("open", True, members[0].commit_sha)
    assert before["aider"] == ("open", True, members[2].commit_sha)
    assert before["codex"] == ("closed", True, members[1].commit_sha)


def test_a_branch_someone_pushed_to_is_kept(store, github, client):
    _, members = side_by_side_run(store, github)
    claude, codex, aider = members
    theirs = github.push_commit(REPO, aider.branch, {"more.txt": "someone's work\n"},
                                message="Someone's own commit")

    answer = pick(pick_command(store, 1, claude.pr_number), store=store, github=None,
                  client=client)

    assert seen(github, client, members) == {
        "claude": ("open", False, claude.commit_sha), "codex": ("closed", True, None),
        "aider": ("closed", True, theirs)}
    assert f"- closed #{aider.pr_number}; its branch `{aider.branch}` was kept: it holds " \
           "commits async-code did not push." in answer.splitlines()
    assert f"- closed #{codex.pr_number} and deleted its branch `{codex.branch}`." in answer


def test_a_pull_request_already_ready_is_picked_as_it_is(store, github, client):
    _, members = side_by_side_run(store, github, agents=["claude", "codex"])
    claude, codex = members
    client.mark_ready_for_review(client.pull_request(codex.pr_number)["node_id"])

    answer = pick(pick_command(store, 1, codex.pr_number), store=store, github=None,
                  client=client)

    assert answer.splitlines()[0] == (f"✅ Picked #{codex.pr_number} (`codex`): it was already "
                                      "ready for review.")
    assert seen(github, client, members) == {"claude": ("closed", True, None),
                                             "codex": ("open", False, codex.commit_sha)}


def test_another_pull_request_closed_by_someone_loses_its_branch_only(store, github, client):
    _, members = side_by_side_run(store, github, agents=["claude", "codex"])
    claude, codex = members
    github.close_pull(REPO, claude.pr_number)

    answer = pick(pick_command(store, 1, codex.pr_number), store=store, github=None,
                  client=client)

    assert answer.splitlines()[1] == (f"- #{claude.pr_number} was already closed and deleted "
                                      f"its branch `{claude.branch}`.")
    assert seen(github, client, members)["claude"] == ("closed", True, None)


def test_a_failure_marking_it_ready_lets_nothing_go(store, github, client):
    _, members = side_by_side_run(store, github)
    github.fail_next("POST", r"^/graphql$", 403, {"message": "Resource not accessible by "
                                                             "integration"})

    answer = pick(pick_command(store, 1, members[0].pr_number), store=store, github=None,
                  client=client)

    assert answer.startswith(f"Nothing picked: #{members[0].pr_number} could not be marked "
                             "ready for review (")
    assert seen(github, client, members) == as_pushed(members)


def test_without_github_nothing_is_picked(store, github):
    _, members = side_by_side_run(store, github, agents=["claude", "codex"])
    answer = pick(pick_command(store, 1, members[0].pr_number), store=store, github=None)
    assert answer == "Nothing picked: this service cannot reach GitHub."


def test_the_client_is_made_with_the_pick_permissions(store, github, app):
    _, members = side_by_side_run(store, github, agents=["claude", "codex"])
    answer = pick(pick_command(store, 1, members[0].pr_number), store=store, github=app)
    assert answer.startswith(f"✅ Picked #{members[0].pr_number} (`claude`)")
    tokens = [token for token in github.minted_tokens.values()
              if token.get("permissions") == PICK_PERMISSIONS]
    assert tokens, "no token was minted with PICK_PERMISSIONS"
