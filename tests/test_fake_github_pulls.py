"""The fake GitHub's issues, labels, pull requests, checks and review threads behave as GitHub's do."""

from pathlib import Path

import httpx
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed

from tests.fakes.github import FakeGitHub
from tests.fakes.keys import generate_app_key
from tests.test_fake_github import APP_ID, INSTALLATION_ID, client, mint_token, run_git, status_of

REPO = "acme/widgets"
ARCHIVED = "acme/attic"


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    return generate_app_key()


@pytest.fixture
def app_client(fake: FakeGitHub, app_key: tuple[str, str]) -> GitHub:
    return client(fake, AppAuthStrategy(str(APP_ID), app_key[0]))


@pytest.fixture
def fake(tmp_path: Path, app_key: tuple[str, str]):
    with FakeGitHub(tmp_path / "github", app_id=APP_ID, public_key_pem=app_key[1]) as github:
        github.add_repo(REPO, {"README.md": "# widgets\n", "src/widget.py": "SIZE = 1\n"})
        github.add_repo(ARCHIVED, {"README.md": "old\n"}, archived=True)
        github.add_installation(INSTALLATION_ID, [REPO, ARCHIVED])
        yield github


def token_client(fake: FakeGitHub, app_client: GitHub, **narrowing) -> GitHub:
    return client(fake, TokenAuthStrategy(mint_token(app_client, **narrowing)))


def open_app_pull(fake: FakeGitHub, app_client: GitHub, tmp_path: Path, branch: str = "topic") -> int:
    """The App's way to a pull request: clone, commit, push, then POST /pulls."""
    token = mint_token(app_client)
    work = tmp_path / f"work-{branch}"
    assert run_git("clone", f"{fake.base_url}/git/{REPO}.git", str(work), token=token).returncode == 0
    (work / "src" / "widget.py").write_text("SIZE = 2\n")
    assert run_git("commit", "-qam", "Grow the widget", cwd=work).returncode == 0
    assert run_git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work, token=token).returncode == 0
    github = client(fake, TokenAuthStrategy(token))
    return github.rest.pulls.create("acme", "widgets", title="Grow", head=branch, base="main").parsed_data.number


def test_an_issue_reads_back_with_its_labels(fake: FakeGitHub, app_client: GitHub):
    fake.add_issue(REPO, 7, title="Widgets are small", body="Make them bigger.", user="dora",
                   labels=["bug", "area/widgets"])
    fake.label_issue(REPO, 7, "help wanted")
    github = token_client(fake, app_client, permissions={"issues": "read"})

    response = github.rest.issues.get("acme", "widgets", 7)
    issue = response.parsed_data

    assert (issue.number, issue.title, issue.body, issue.state) == (7, "Widgets are small", "Make them bigger.", "open")
    assert issue.user.login == "dora"
    assert [label.name for label in issue.labels] == ["bug", "area/widgets", "help wanted"]
    assert "pull_request" not in response.json()
    assert fake.issue_labels(REPO, 7) == ["bug", "area/widgets", "help wanted"]


def test_getting_an_issue_needs_the_issues_permission_even_for_a_pull_request(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    number = open_app_pull(fake, app_client, tmp_path)
    pulls_only = token_client(fake, app_client, permissions={"pull_requests": "write"})
    github = token_client(fake, app_client, permissions={"issues": "read"})

    with pytest.raises(RequestFailed) as refused:
        pulls_only.rest.issues.get("acme", "widgets", number)
    with pytest.raises(RequestFailed) as unknown:
        github.rest.issues.get("acme", "widgets", 999)
    as_issue = github.rest.issues.get("acme", "widgets", number)

    assert status_of(refused) == (403, "Resource not accessible by integration")
    assert fake.auth_failures[-1][2] == "token lacks issues:read"
    assert unknown.value.response.status_code == 404
    assert as_issue.parsed_data.pull_request.html_url == f"{fake.base_url}/{REPO}/pull/{number}"
    assert as_issue.json()["pull_request"]["merged_at"] is None


def test_issues_and_pull_requests_share_one_number_space(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    fake.add_issue(REPO, 100)
    fake.add_issue(REPO, 101)

    number = open_app_pull(fake, app_client, tmp_path)

    assert number == 102
    with pytest.raises(ValueError, match="is a pull request"):
        fake.add_issue(REPO, number)


def test_comments_list_in_the_order_they_were_made_a_page_at_a_time(
    fake: FakeGitHub, app_client: GitHub
):
    fake.add_comment(REPO, 7, 12, "dora", "first")
    github = token_client(fake, app_client, permissions={"issues": "write"})
    github.rest.issues.create_comment("acme", "widgets", 7, body="second")
    fake.add_comment(REPO, 7, 13, "erin", "third")
    fake.add_comment(REPO, 8, 14, "erin", "elsewhere")
    github.rest.issues.create_comment("acme", "widgets", 7, body="fourth")
    fake.add_comment(REPO, 7, 15, "dora", "fifth")

    first_page = github.rest.issues.list_comments("acme", "widgets", 7, per_page=2)
    last_page = github.rest.issues.list_comments("acme", "widgets", 7, per_page=2, page=3)
    everything = list(github.rest.paginate(github.rest.issues.list_comments, owner="acme",
                                           repo="widgets", issue_number=7, per_page=2))

    assert [c.body for c in first_page.parsed_data] == ["first", "second"]
    assert 'rel="next"' in first_page.headers["Link"] and "page=2" in first_page.headers["Link"]
    assert [c.body for c in last_page.parsed_data] == ["fifth"]
    assert 'rel="next"' not in last_page.headers["Link"]
    assert [c.body for c in everything] == ["first", "second", "third", "fourth", "fifth"]
    assert [c.user.login for c in everything] == ["dora", "async-code[bot]", "erin", "async-code[bot]", "dora"]
    assert "Link" not in github.rest.issues.list_comments("acme", "widgets", 8).headers


def test_listing_comments_takes_either_permission_on_a_pull_request_and_issues_on_an_issue(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    number = open_app_pull(fake, app_client, tmp_path)
    fake.add_comment(REPO, number, 21, "dora", "looks good")
    fake.add_issue(REPO, 7)
    pulls_only = token_client(fake, app_client, permissions={"pull_requests": "write"})
    github = token_client(fake, app_client)

    on_pull = pulls_only.rest.issues.list_comments("acme", "widgets", number).parsed_data
    commented = pulls_only.rest.issues.create_comment("acme", "widgets", number, body="thanks")
    with pytest.raises(RequestFailed) as on_issue:
        pulls_only.rest.issues.list_comments("acme", "widgets", 7)
    with pytest.raises(RequestFailed) as unknown:
        github.rest.issues.list_comments("acme", "widgets", 999)

    assert [c.body for c in on_pull] == ["looks good"]
    assert commented.status_code == 201
    assert status_of(on_issue) == (403, "Resource not accessible by integration")
    assert fake.auth_failures[-1][2] == "token lacks issues:read"
    assert unknown.value.response.status_code == 404


def test_a_label_comes_off_once_and_then_is_not_there(fake: FakeGitHub, app_client: GitHub):
    fake.add_issue(REPO, 7, labels=["async-code", "needs review/urgent", "bug"])
    github = token_client(fake, app_client, permissions={"issues": "write"})

    remaining = github.rest.issues.remove_label("acme", "widgets", 7, "async-code")
    with pytest.raises(RequestFailed) as again:
        github.rest.issues.remove_label("acme", "widgets", 7, "async-code")

    assert remaining.status_code == 200
    assert [label.name for label in remaining.parsed_data] == ["needs review/urgent", "bug"]
    assert status_of(again) == (404, "Label does not exist")
    assert fake.issue_labels(REPO, 7) == ["needs review/urgent", "bug"]


@pytest.mark.parametrize("encoded", [True, False])
def test_a_label_with_a_slash_and_spaces_can_be_named_in_the_path(
    fake: FakeGitHub, app_client: GitHub, encoded: bool
):
    fake.add_issue(REPO, 7, labels=["needs review/urgent", "bug"])
    token = mint_token(app_client, permissions={"issues": "write"})
    name = "needs%20review%2Furgent" if encoded else "needs review/urgent"

    with httpx.Client(base_url=fake.base_url) as http:
        response = http.delete(f"/repos/acme/widgets/issues/7/labels/{name}",
                               headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert [label["name"] for label in response.json()] == ["bug"]
    assert fake.issue_labels(REPO, 7) == ["bug"]


def test_removing_a_label_needs_write_and_refuses_unknown_issues_and_archived_repos(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    fake.add_issue(REPO, 7, labels=["bug"])
    fake.add_issue(ARCHIVED, 3, labels=["bug"])
    number = open_app_pull(fake, app_client, tmp_path)
    fake.label_issue(REPO, number, "async-code")
    read_only = token_client(fake, app_client, permissions={"issues": "read"})
    pulls_only = token_client(fake, app_client, permissions={"pull_requests": "write"})
    github = token_client(fake, app_client)

    with pytest.raises(RequestFailed) as without_write:
        read_only.rest.issues.remove_label("acme", "widgets", 7, "bug")
    with pytest.raises(RequestFailed) as pulls_on_issue:
        pulls_only.rest.issues.remove_label("acme", "widgets", 7, "bug")
    pulls_on_pull = pulls_only.rest.issues.remove_label("acme", "widgets", number, "async-code")
    with pytest.raises(RequestFailed) as unknown:
        github.rest.issues.remove_label("acme", "widgets", 999, "bug")
    with pytest.raises(RequestFailed) as archived:
        github.rest.issues.remove_label("acme", "attic", 3, "bug")

    assert status_of(without_write) == (403, "Resource not accessible by integration")
    assert status_of(pulls_on_issue) == (403, "Resource not accessible by integration")
    assert fake.auth_failures[-1][2] == "token lacks issues:write"
    assert pulls_on_pull.parsed_data == []
    assert status_of(unknown) == (404, "Not Found")
    assert status_of(archived) == (403, "Repository was archived so is read-only.")
    assert fake.issue_labels(REPO, 7) == ["bug"] and fake.issue_labels(ARCHIVED, 3) == ["bug"]
    assert fake.issue_labels(REPO, number) == []


def test_the_app_s_pull_request_is_labelable_and_commentable_as_an_issue(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    number = open_app_pull(fake, app_client, tmp_path)
    fake.label_issue(REPO, number, "async-code")
    github = token_client(fake, app_client)

    github.rest.issues.create_comment("acme", "widgets", number, body="Done.")
    issue = github.rest.issues.get("acme", "widgets", number).parsed_data

    assert [label.name for label in issue.labels] == ["async-code"]
    assert issue.comments == 1 and issue.user.login == "async-code[bot]"
    assert [(c["issue_number"], c["body"]) for c in fake.comments.values()] == [(number, "Done.")]
