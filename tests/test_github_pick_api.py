"""What picking one of several draft pull requests takes of GitHub: marking the chosen one ready
for review (GraphQL only), closing the others and deleting their branches; the runner's client
against the loopback fake, with narrowed tokens."""

from __future__ import annotations

import httpx
import pytest

from runner.github import ACKNOWLEDGE_PERMISSIONS, EXECUTE_PERMISSIONS, GitHubApp, GitHubError
from tests.conftest import APP_ID, INSTALLATION_ID, REPO

PULLS_ONLY = {"pull_requests": "write", "metadata": "read"}
PULLS_READ = {"pull_requests": "read", "contents": "write", "metadata": "read"}


@pytest.fixture
def app(github, app_key):
    return GitHubApp(app_id=str(APP_ID), private_key=app_key[0], api_url=github.base_url,
                     slug="async-code")


@pytest.fixture
def client(app):
    return app.repo_client(INSTALLATION_ID, REPO, EXECUTE_PERMISSIONS)


def draft(github, branch: str) -> int:
    return github.add_pull(REPO, head=branch, files={f"{branch}.txt": "tried\n"}, draft=True)


def test_marking_ready_takes_the_draft_out_of_draft(github, client):
    chosen, other = draft(github, "async-code/try-1"), draft(github, "async-code/try-2")
    assert client.pull_request(chosen)["draft"] is True

    client.mark_ready_for_review(client.pull_request(chosen)["node_id"])

    assert client.pull_request(chosen)["draft"] is False
    assert client.pull_request(other)["draft"] is True


def test_marking_ready_needs_pull_requests_write(github, app, client):
    number = draft(github, "async-code/try-1")
    node_id = client.pull_request(number)["node_id"]
    reader = app.repo_client(INSTALLATION_ID, REPO, PULLS_READ)

    with pytest.raises(GitHubError, match="Resource not accessible by integration"):
        reader.mark_ready_for_review(node_id)
    assert client.pull_request(number)["draft"] is True


def test_marking_an_unknown_pull_request_ready_fails(github, client):
    number = draft(github, "async-code/try-1")
    with pytest.raises(GitHubError, match="Could not resolve to a node with the global id of "
                                          "'PR_fake1'"):
        client.mark_ready_for_review("PR_fake1")
    assert client.pull_request(number)["draft"] is True


def test_a_closed_draft_cannot_be_marked_ready(github, client):
    number = draft(github, "async-code/try-1")
    github.close_pull(REPO, number)
    with pytest.raises(GitHubError, match="closed"):
        client.mark_ready_for_review(client.pull_request(number)["node_id"])
    assert client.pull_request(number)["draft"] is True


def test_the_mutation_fails_as_github_graphql_does(github, app, client):
    """A 200 with `errors` and a null field: FORBIDDEN without the permission, NOT_FOUND for a
    node the token cannot see, and a query cannot run the mutation."""
    number = draft(github, "async-code/try-1")
    node_id = client.pull_request(number)["node_id"]
    mutation = ("mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) "
                "{ pullRequest { isDraft } } }")

    def post(permissions: dict, query: str = mutation, pull: str = node_id) -> dict:
        token = app.installation_token(INSTALLATION_ID, REPO, permissions)
        response = httpx.post(f"{github.base_url}/graphql", json={
            "query": query, "variables": {"id": pull}}, headers={"Authorization": f"token {token}"})
        assert response.status_code == 200, response.text
        return response.json()

    forbidden = post(PULLS_READ)
    assert forbidden["data"] == {"markPullRequestReadyForReview": None}
    assert forbidden["errors"][0]["type"] == "FORBIDDEN"
    missing = post(PULLS_ONLY, pull="PR_fake1")
    assert missing["errors"][0]["type"] == "NOT_FOUND"
    assert "errors" in post(PULLS_ONLY, query=mutation.replace("mutation", "query", 1))
    assert client.pull_request(number)["draft"] is True
    assert post(PULLS_ONLY) == {"data": {"markPullRequestReadyForReview": {
        "pullRequest": {"isDraft": False}}}}
    assert client.pull_request(number)["draft"] is False


def test_closing_a_pull_request(github, client):
    number = draft(github, "async-code/try-2")

    closed = client.close_pull_request(number)

    assert (closed["number"], closed["state"]) == (number, "closed")
    assert client.pull_request(number)["state"] == "closed"
    assert client.open_pull_requests_from("async-code/try-2") == []
    assert github.branch_sha(REPO, "async-code/try-2") is not None  # the branch stays


def test_closing_needs_pull_requests_write(github, app, client):
    number = draft(github, "async-code/try-2")
    with pytest.raises(GitHubError) as refused:
        app.repo_client(INSTALLATION_ID, REPO, PULLS_READ).close_pull_request(number)
    assert refused.value.status == 403
    assert client.pull_request(number)["state"] == "open"


def test_a_closed_pull_request_reopens_unless_merged(github, client):
    number = draft(github, "async-code/try-2")
    client.close_pull_request(number)
    reopened = client.call("PATCH", f"/repos/{REPO}/pulls/{number}", json={"state": "open"})
    assert reopened["state"] == "open" and reopened["closed_at"] is None
    merged = github.add_pull(REPO, head="merged", files={"m.txt": "m\n"}, merged=True)
    with pytest.raises(GitHubError) as refused:
        client.call("PATCH", f"/repos/{REPO}/pulls/{merged}", json={"state": "open"})
    assert refused.value.status == 422


def test_deleting_a_branch_and_deleting_it_again(github, client):
    draft(github, "async-code/try-2")
    kept = draft(github, "async-code/try-1")
    assert github.branch_sha(REPO, "async-code/try-2") is not None

    client.delete_branch("async-code/try-2")

    assert github.branch_sha(REPO, "async-code/try-2") is None
    with pytest.raises(GitHubError) as gone:
        client.branch("async-code/try-2")
    assert gone.value.status == 404
    client.delete_branch("async-code/try-2")  # already gone: fine
    assert github.branch_sha(REPO, "async-code/try-1") is not None
    assert client.pull_request(kept)["head"]["ref"] == "async-code/try-1"


def test_a_branch_name_is_quoted_segment_by_segment(github, client):
    """Unquoted, "#" would cut the path at "async-code/try", which does not exist: the call
    would pass as "already gone" and leave the branch."""
    github.push_commit(REPO, "async-code/try#3", {"x.txt": "x\n"}, parent_branch="main")
    client.delete_branch("async-code/try#3")
    assert github.branch_sha(REPO, "async-code/try#3") is None


def test_deleting_a_branch_needs_contents_write(github, app):
    draft(github, "async-code/try-2")
    with pytest.raises(GitHubError) as refused:
        app.repo_client(INSTALLATION_ID, REPO, ACKNOWLEDGE_PERMISSIONS).delete_branch(
            "async-code/try-2")
    assert refused.value.status == 403
    assert github.branch_sha(REPO, "async-code/try-2") is not None


def test_a_protected_branch_is_not_deleted(github, client):
    github.protect_branch(REPO, "main")
    with pytest.raises(GitHubError) as refused:
        client.delete_branch("main")
    assert refused.value.status == 422
    assert github.branch_sha(REPO, "main") is not None
