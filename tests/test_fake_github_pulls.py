"""The fake GitHub's issues, labels, pull requests, checks and review threads behave as GitHub's."""

from pathlib import Path

import httpx
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.exception import GraphQLFailed, RequestFailed

from tests.fakes.github import FakeGitHub
from tests.fakes.keys import generate_app_key
from tests.test_fake_github import (APP_ID, INSTALLATION_ID, bare_git, client, mint_token, run_git,
                                    status_of)

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


def clone(fake: FakeGitHub, token: str, work: Path) -> None:
    cloned = run_git("clone", f"{fake.base_url}/git/{REPO}.git", str(work), token=token)
    assert cloned.returncode == 0, cloned.stderr


def open_app_pull(fake: FakeGitHub, app_client: GitHub, tmp_path: Path,
                  branch: str = "topic") -> int:
    """The App's way to a pull request: clone, commit, push, then POST /pulls."""
    token = mint_token(app_client)
    work = tmp_path / f"work-{branch}"
    clone(fake, token, work)
    (work / "src" / "widget.py").write_text("SIZE = 2\n")
    assert run_git("commit", "-qam", "Grow the widget", cwd=work).returncode == 0
    pushed = run_git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work, token=token)
    assert pushed.returncode == 0, pushed.stderr
    github = client(fake, TokenAuthStrategy(token))
    created = github.rest.pulls.create("acme", "widgets", title="Grow", head=branch, base="main")
    return created.parsed_data.number


def test_an_issue_reads_back_with_its_labels(fake: FakeGitHub, app_client: GitHub):
    fake.add_issue(REPO, 7, title="Widgets are small", body="Make them bigger.", user="dora",
                   labels=["bug", "area/widgets"])
    fake.label_issue(REPO, 7, "help wanted")
    github = token_client(fake, app_client, permissions={"issues": "read"})

    response = github.rest.issues.get("acme", "widgets", 7)
    issue = response.parsed_data

    assert (issue.number, issue.title, issue.body, issue.state) == (
        7, "Widgets are small", "Make them bigger.", "open")
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
    assert [c.user.login for c in everything] == [
        "dora", "async-code[bot]", "erin", "async-code[bot]", "dora"]
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


def test_a_pushed_commit_writes_and_deletes_files_on_its_branch(fake: FakeGitHub):
    before = bare_git(fake, REPO, "rev-parse", "main")

    sha = fake.push_commit(REPO, "main", {"docs/guide.md": "# Guide\n", "README.md": None},
                           message="Move the docs")
    topic = fake.push_commit(REPO, "feature/x", {"x.txt": "x\n"}, parent_branch="main")

    assert bare_git(fake, REPO, "rev-parse", "main") == sha
    assert bare_git(fake, REPO, "rev-parse", "main^") == before
    assert bare_git(fake, REPO, "ls-tree", "-r", "--name-only", "main").split() == [
        "docs/guide.md", "src/widget.py"]
    assert bare_git(fake, REPO, "log", "-1", "--format=%s", "main") == "Move the docs"
    assert bare_git(fake, REPO, "rev-parse", "feature/x^") == sha and topic != sha
    with pytest.raises(ValueError, match="no branch nowhere"):
        fake.push_commit(REPO, "nowhere", {"a": "b"})
    with pytest.raises(ValueError, match="already has a branch feature/x"):
        fake.push_commit(REPO, "feature/x", {"a": "b"}, parent_branch="main")


def test_a_person_s_pull_request_reads_back_whole(fake: FakeGitHub, app_client: GitHub):
    number = fake.add_pull(REPO, head="bigger", title="Bigger widgets", body="As asked in #7.",
                           files={"src/widget.py": "SIZE = 3\nCOLOUR = 'red'\n", "NOTES.md": "n\n"},
                           draft=True)
    fake.label_issue(REPO, number, "async-code")
    github = token_client(fake, app_client, permissions={"pull_requests": "read"})

    pull = github.rest.pulls.get("acme", "widgets", number).parsed_data

    assert number == 100
    assert (pull.number, pull.title, pull.body, pull.state, pull.draft) == (
        100, "Bigger widgets", "As asked in #7.", "open", True)
    assert pull.user.login == "carol" and pull.author_association == "NONE"
    assert (pull.head.ref, pull.head.label, pull.head.sha) == (
        "bigger", "acme:bigger", bare_git(fake, REPO, "rev-parse", "bigger"))
    assert (pull.base.ref, pull.base.sha) == ("main", bare_git(fake, REPO, "rev-parse", "main"))
    assert pull.head.repo.full_name == pull.base.repo.full_name == REPO
    assert (pull.commits, pull.additions, pull.deletions, pull.changed_files) == (1, 3, 1, 2)
    assert [label.name for label in pull.labels] == ["async-code"]
    assert (pull.merged, pull.merged_at, pull.closed_at) == (False, None, None)
    assert fake.pulls[-1]["user"] == "carol"


def test_the_head_sha_follows_pushes_until_the_pull_request_closes(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    theirs = fake.add_pull(REPO, head="bigger", files={"src/widget.py": "SIZE = 3\n"})
    ours = open_app_pull(fake, app_client, tmp_path)
    github = token_client(fake, app_client)

    moved = fake.push_commit(REPO, "bigger", {"src/widget.py": "SIZE = 4\n"})
    ours_moved = fake.push_commit(REPO, "topic", {"extra.txt": "more\n"})
    after_push = github.rest.pulls.get("acme", "widgets", theirs).parsed_data
    fake.close_pull(REPO, theirs)
    fake.push_commit(REPO, "bigger", {"src/widget.py": "SIZE = 5\n"})
    closed = github.rest.pulls.get("acme", "widgets", theirs).parsed_data
    as_issue = github.rest.issues.get("acme", "widgets", theirs).parsed_data

    assert (after_push.head.sha, after_push.commits) == (moved, 2)
    assert github.rest.pulls.get("acme", "widgets", ours).parsed_data.head.sha == ours_moved
    assert (closed.state, closed.merged, closed.head.sha, closed.commits) == (
        "closed", False, moved, 2)
    assert closed.closed_at is not None and closed.merged_at is None
    assert as_issue.state == "closed" and as_issue.closed_at is not None
    with pytest.raises(ValueError, match="already closed"):
        fake.close_pull(REPO, theirs)


def test_a_merged_pull_request_says_so_everywhere(fake: FakeGitHub, app_client: GitHub):
    number = fake.add_pull(REPO, head="bigger", files={"src/widget.py": "SIZE = 3\n"}, merged=True)
    github = token_client(fake, app_client)

    pull = github.rest.pulls.get("acme", "widgets", number).parsed_data
    issue = github.rest.issues.get("acme", "widgets", number).parsed_data

    assert (pull.state, pull.merged, pull.merged_by.login) == ("closed", True, "acme")
    assert pull.merged_at is not None and pull.closed_at is not None
    assert issue.pull_request.merged_at == pull.merged_at


def test_a_pull_request_needs_commits_and_a_free_number(fake: FakeGitHub):
    fake.add_issue(REPO, 120)
    fake.push_commit(REPO, "empty", {}, parent_branch="main")
    bare_git(fake, REPO, "update-ref", "refs/heads/same", "main")

    with pytest.raises(ValueError, match="no commits between main and same"):
        fake.add_pull(REPO, head="same")
    with pytest.raises(ValueError, match="already exists"):
        fake.add_pull(REPO, head="empty", number=120)
    with pytest.raises(ValueError, match="has no branch missing"):
        fake.add_pull(REPO, head="missing")

    assert fake.add_pull(REPO, head="empty", number=130) == 130
    assert fake.add_pull(REPO, head="bigger", files={"a.txt": "a\n"}) == 131


def test_a_pull_request_from_a_fork_lives_in_the_fork(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    number = fake.add_pull(REPO, head="topic", fork="carol/widgets",
                           files={"src/widget.py": "SIZE = 9\n"})
    token = mint_token(app_client)
    github = client(fake, TokenAuthStrategy(token))

    pull = github.rest.pulls.get("acme", "widgets", number).parsed_data
    files = github.rest.pulls.list_files("acme", "widgets", number).parsed_data
    with pytest.raises(RequestFailed) as fork_api:
        github.rest.repos.get("carol", "widgets")

    assert (pull.head.label, pull.head.user.login) == ("carol:topic", "carol")
    assert (pull.head.repo.full_name, pull.head.repo.fork) == ("carol/widgets", True)
    assert (pull.base.repo.full_name, pull.base.repo.fork) == (REPO, False)
    assert pull.head.sha == bare_git(fake, "carol/widgets", "rev-parse", "topic")
    assert bare_git(fake, REPO, "branch", "--list", "topic") == ""
    assert [(f.filename, f.patch) for f in files] == [
        ("src/widget.py", "@@ -1 +1 @@\n-SIZE = 1\n+SIZE = 9")]
    assert status_of(fork_api) == (403, "Resource not accessible by integration")


def test_the_app_s_token_cannot_push_to_a_fork(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    fake.add_pull(REPO, head="topic", fork="carol/widgets", files={"src/widget.py": "SIZE = 9\n"})
    token = mint_token(app_client)
    before = bare_git(fake, "carol/widgets", "rev-parse", "topic")
    work = tmp_path / "work"
    clone(fake, token, work)
    assert run_git("commit", "--allow-empty", "-m", "Sneak in", cwd=work).returncode == 0

    pushed = run_git("push", f"{fake.base_url}/git/carol/widgets.git", "HEAD:refs/heads/topic",
                     cwd=work, token=token)

    assert pushed.returncode != 0 and "403" in pushed.stderr
    assert fake.auth_failures[-1] == ("GET", "/git/carol/widgets.git/info/refs",
                                      "token does not cover carol/widgets")
    assert bare_git(fake, "carol/widgets", "rev-parse", "topic") == before


def test_pull_request_files_are_git_s_diff_a_page_at_a_time(fake: FakeGitHub, app_client: GitHub):
    fake.push_commit(REPO, "main", {"docs/old-name.md": "".join(f"line {n}\n" for n in range(20)),
                                    "gone.txt": "bye\n"})
    number = fake.add_pull(REPO, head="tidy", files={
        "src/widget.py": "SIZE = 1\nCOLOUR = 'red'\n",
        "docs/old-name.md": None,
        "docs/new-name.md": "".join(f"line {n}\n" for n in range(20)) + "line 20\n",
        "gone.txt": None,
        "added.txt": "hello\n",
    })
    github = token_client(fake, app_client, permissions={"pull_requests": "read"})
    head = bare_git(fake, REPO, "rev-parse", "tidy")

    first = github.rest.pulls.list_files("acme", "widgets", number, per_page=2)
    everything = list(github.rest.paginate(github.rest.pulls.list_files, owner="acme",
                                           repo="widgets", pull_number=number, per_page=2))
    by_name = {f.filename: f for f in everything}

    assert len(first.parsed_data) == 2 and 'rel="next"' in first.headers["Link"]
    assert sorted(by_name) == ["added.txt", "docs/new-name.md", "gone.txt", "src/widget.py"]
    renamed = by_name["docs/new-name.md"]
    assert (renamed.status, renamed.previous_filename, renamed.additions, renamed.deletions) == (
        "renamed", "docs/old-name.md", 1, 0)
    assert (by_name["gone.txt"].status, by_name["gone.txt"].deletions) == ("removed", 1)
    assert (by_name["added.txt"].status, by_name["added.txt"].patch) == (
        "added", "@@ -0,0 +1 @@\n+hello")
    modified = by_name["src/widget.py"]
    assert (modified.status, modified.additions, modified.deletions, modified.changes) == (
        "modified", 1, 0, 1)
    assert modified.patch == "@@ -1 +1,2 @@\n SIZE = 1\n+COLOUR = 'red'"
    assert modified.sha == bare_git(fake, REPO, "rev-parse", "tidy:src/widget.py")
    assert modified.blob_url == f"{fake.base_url}/{REPO}/blob/{head}/src/widget.py"
    assert modified.contents_url == (
        f"{fake.base_url}/repos/{REPO}/contents/src/widget.py?ref={head}")


def test_pull_request_endpoints_check_permission_and_number(
    fake: FakeGitHub, app_client: GitHub
):
    number = fake.add_pull(REPO, head="bigger", files={"src/widget.py": "SIZE = 3\n"})
    fake.add_issue(REPO, 7)
    issues_only = token_client(fake, app_client, permissions={"issues": "write"})
    contents_only = token_client(fake, app_client, permissions={"contents": "read"})
    github = token_client(fake, app_client)

    with pytest.raises(RequestFailed) as without_pulls:
        issues_only.rest.pulls.get("acme", "widgets", number)
    by_contents = contents_only.rest.pulls.get("acme", "widgets", number)
    with pytest.raises(RequestFailed) as files_by_contents:
        contents_only.rest.pulls.list_files("acme", "widgets", number)
    with pytest.raises(RequestFailed) as an_issue:
        github.rest.pulls.get("acme", "widgets", 7)
    with pytest.raises(RequestFailed) as unknown_files:
        github.rest.pulls.list_files("acme", "widgets", 999)

    assert status_of(without_pulls) == (403, "Resource not accessible by integration")
    assert fake.auth_failures[0][2] == "token lacks pull_requests:read or contents:read"
    assert by_contents.status_code == 200
    assert status_of(files_by_contents) == (403, "Resource not accessible by integration")
    assert status_of(an_issue) == (404, "Not Found")
    assert status_of(unknown_files) == (404, "Not Found")


def test_a_branch_reads_back_with_its_commit_and_protection(fake: FakeGitHub, app_client: GitHub):
    sha = fake.push_commit(REPO, "release/1.x", {"VERSION": "1\n"}, message="Cut 1.x\n\nFirst.",
                           parent_branch="main")
    github = token_client(fake, app_client, permissions={"contents": "read"})
    issues_only = token_client(fake, app_client, permissions={"issues": "write"})

    unprotected = github.rest.repos.get_branch("acme", "widgets", "release/1.x").parsed_data
    fake.protect_branch(REPO, "release/1.x")
    protected = github.rest.repos.get_branch("acme", "widgets", "release/1.x").parsed_data
    with pytest.raises(RequestFailed) as missing:
        github.rest.repos.get_branch("acme", "widgets", "release/2.x")
    with pytest.raises(RequestFailed) as without_contents:
        issues_only.rest.repos.get_branch("acme", "widgets", "main")

    assert (unprotected.name, unprotected.commit.sha, unprotected.protected) == (
        "release/1.x", sha, False)
    assert unprotected.commit.commit.message == "Cut 1.x\n\nFirst."
    assert unprotected.commit.parents[0].sha == bare_git(fake, REPO, "rev-parse", "main")
    assert (protected.protected, protected.protection.enabled) == (True, True)
    assert status_of(missing) == (404, "Branch not found")
    assert status_of(without_contents) == (403, "Resource not accessible by integration")


def test_check_runs_for_a_ref_a_page_at_a_time(fake: FakeGitHub, app_client: GitHub):
    fake.add_installation(INSTALLATION_ID, [REPO, ARCHIVED], permissions={
        "contents": "write", "checks": "read", "pull_requests": "write"})
    number = fake.add_pull(REPO, head="bigger", files={"src/widget.py": "SIZE = 3\n"})
    head = bare_git(fake, REPO, "rev-parse", "bigger")
    fake.add_check_run(REPO, head, "tests", conclusion="failure", title="2 failed",
                       summary="test_size, test_colour", text="AssertionError: 3 != 1")
    fake.add_check_run(REPO, head, "lint", status="in_progress")
    rerun = fake.add_check_run(REPO, head, "tests", conclusion="success", title="all passed")
    main = bare_git(fake, REPO, "rev-parse", "main")
    fake.add_check_run(REPO, main, "tests", conclusion="success")
    github = token_client(fake, app_client, permissions={"checks": "read"})

    by_branch = github.rest.checks.list_for_ref("acme", "widgets", "bigger").parsed_data
    by_sha = github.rest.checks.list_for_ref("acme", "widgets", head, filter_="all").parsed_data
    first_page = github.rest.checks.list_for_ref("acme", "widgets", head[:12], filter_="all",
                                                 per_page=2)
    failed = github.rest.checks.list_for_ref("acme", "widgets", head, check_name="tests",
                                            filter_="all", status="completed").parsed_data

    assert by_branch.total_count == 2
    assert [(run.name, run.status, run.conclusion) for run in by_branch.check_runs] == [
        ("tests", "completed", "success"), ("lint", "in_progress", None)]
    assert by_branch.check_runs[0].id == rerun and by_branch.check_runs[0].head_sha == head
    assert [run.pull_requests[0].number for run in by_branch.check_runs] == [number, number]
    assert by_sha.total_count == 3
    assert first_page.parsed_data.total_count == 3 and len(first_page.parsed_data.check_runs) == 2
    assert 'rel="next"' in first_page.headers["Link"]
    assert [(run.conclusion, run.output.title, run.output.text) for run in failed.check_runs] == [
        ("success", "all passed", None), ("failure", "2 failed", "AssertionError: 3 != 1")]
    assert failed.check_runs[1].app.slug == "ci"


def test_check_runs_need_the_checks_permission_and_a_known_ref(
    fake: FakeGitHub, app_client: GitHub
):
    fake.add_installation(INSTALLATION_ID, [REPO, ARCHIVED],
                          permissions={"contents": "write", "checks": "read"})
    without_checks = token_client(fake, app_client, permissions={"contents": "read"})
    github = token_client(fake, app_client, permissions={"checks": "read"})

    with pytest.raises(RequestFailed) as refused:
        without_checks.rest.checks.list_for_ref("acme", "widgets", "main")
    with pytest.raises(RequestFailed) as unknown:
        github.rest.checks.list_for_ref("acme", "widgets", "no-such-branch")
    empty = github.rest.checks.list_for_ref("acme", "widgets", "main").parsed_data

    assert status_of(refused) == (403, "Resource not accessible by integration")
    assert fake.auth_failures[-1][2] == "token lacks checks:read"
    assert status_of(unknown) == (422, "No commit found for SHA: no-such-branch")
    assert (empty.total_count, empty.check_runs) == (0, [])


WIDGET = "".join(f"PART_{n} = {n}\n" for n in range(1, 11))


@pytest.fixture
def reviewed(fake: FakeGitHub) -> int:
    """A person's pull request with two review threads: 301 (and a reply, 302) and 303."""
    fake.push_commit(REPO, "main", {"src/parts.py": WIDGET})
    number = fake.add_pull(REPO, head="parts", files={
        "src/parts.py": WIDGET.replace("PART_5 = 5\n", "PART_5 = 50\n"),
        "src/widget.py": "SIZE = 1\nCOLOUR = 'red'\n",
    })
    fake.add_review_comment(REPO, number, 301, "dora", "Why 50?", path="src/parts.py", line=5)
    fake.add_review_comment(REPO, number, 302, "carol", "It is bigger.", in_reply_to=301)
    fake.add_review_comment(REPO, number, 303, "dora", "Name the colour.", path="src/widget.py",
                            line=2, start_line=1)
    return number


def test_review_comments_list_with_their_place_in_the_diff(
    fake: FakeGitHub, app_client: GitHub, reviewed: int
):
    github = token_client(fake, app_client, permissions={"pull_requests": "read"})
    head = bare_git(fake, REPO, "rev-parse", "parts")

    response = github.rest.pulls.list_review_comments("acme", "widgets", reviewed)
    top, reply, ranged = response.parsed_data
    second_page = github.rest.pulls.list_review_comments("acme", "widgets", reviewed, per_page=2,
                                                         page=2)

    assert [c.id for c in (top, reply, ranged)] == [301, 302, 303]
    assert (top.path, top.line, top.side, top.start_line, top.original_line) == (
        "src/parts.py", 5, "RIGHT", None, 5)
    assert top.diff_hunk == "@@ -2,7 +2,7 @@ PART_1 = 1\n PART_2 = 2\n PART_3 = 3\n PART_4 = 4\n" \
                           "-PART_5 = 5\n+PART_5 = 50"
    assert (top.position, top.commit_id, top.original_commit_id) == (5, head, head)
    assert "in_reply_to_id" not in response.json()[0]
    assert (reply.in_reply_to_id, reply.path, reply.line, reply.user.login) == (
        301, "src/parts.py", 5, "carol")
    assert reply.pull_request_review_id != top.pull_request_review_id
    assert (ranged.start_line, ranged.line, ranged.start_side) == (1, 2, "RIGHT")
    assert top.html_url == f"{fake.base_url}/{REPO}/pull/{reviewed}#discussion_r301"
    assert [c.id for c in second_page.parsed_data] == [303]
    assert github.rest.pulls.get("acme", "widgets", reviewed).parsed_data.review_comments == 3


def test_a_review_comment_must_sit_on_the_diff(fake: FakeGitHub, reviewed: int):
    with pytest.raises(ValueError, match="README.md is not changed"):
        fake.add_review_comment(REPO, reviewed, 310, "dora", "?", path="README.md", line=1)
    with pytest.raises(ValueError, match="RIGHT line 9 of src/parts.py is not in the diff"):
        fake.add_review_comment(REPO, reviewed, 311, "dora", "?", path="src/parts.py", line=9)
    with pytest.raises(ValueError, match="already taken"):
        fake.add_review_comment(REPO, reviewed, 301, "dora", "?", path="src/parts.py", line=5)
    with pytest.raises(ValueError, match="already taken"):
        fake.add_comment(REPO, reviewed, 303, "dora", "an issue comment with a review comment's id")
    fake.add_review_comment(REPO, reviewed, 312, "dora", "Was 5.", path="src/parts.py", line=5,
                            side="LEFT")
    assert fake.review_comments[312]["position"] == 4


def test_the_app_replies_in_the_thread_of_the_top_comment(
    fake: FakeGitHub, app_client: GitHub, reviewed: int
):
    github = token_client(fake, app_client,
                          permissions={"pull_requests": "write", "issues": "write"})

    first = github.rest.pulls.create_reply_for_review_comment("acme", "widgets", reviewed, 301,
                                                              body="Made it 50 on purpose.")
    to_a_reply = github.rest.pulls.create_reply_for_review_comment("acme", "widgets", reviewed, 302,
                                                                   body="See above.")
    issue_comment = github.rest.issues.create_comment("acme", "widgets", reviewed, body="Done.")

    assert first.status_code == 201
    assert (first.parsed_data.in_reply_to_id, first.parsed_data.user.login) == (
        301, "async-code[bot]")
    assert (first.parsed_data.path, first.parsed_data.line) == ("src/parts.py", 5)
    assert to_a_reply.parsed_data.in_reply_to_id == 301
    ids = [first.parsed_data.id, to_a_reply.parsed_data.id, issue_comment.parsed_data.id]
    assert len(set(ids)) == 3 and min(ids) >= 5000
    assert fake.review_comments[first.parsed_data.id]["history"] == ["Made it 50 on purpose."]
    assert fake.review_comments[first.parsed_data.id]["in_reply_to"] == 301


def test_a_reply_needs_a_comment_on_that_pull_request_and_the_write_permission(
    fake: FakeGitHub, app_client: GitHub, reviewed: int
):
    other = fake.add_pull(REPO, head="other", files={"other.txt": "other\n"})
    fake.add_review_comment(REPO, other, 401, "dora", "Hm.", path="other.txt", line=1)
    fake.add_issue(REPO, 7)
    fake.add_comment(REPO, reviewed, 402, "dora", "An issue comment, not a review comment.")
    github = token_client(fake, app_client)
    issues_only = token_client(fake, app_client, permissions={"issues": "write"})

    def reply(to: int, body: str = "ok", on: int = reviewed, client_: GitHub = github):
        with pytest.raises(RequestFailed) as failure:
            client_.rest.pulls.create_reply_for_review_comment("acme", "widgets", on, to, body=body)
        return status_of(failure)

    assert reply(401) == (404, "Not Found")
    assert reply(402) == (404, "Not Found")
    assert reply(301, on=7) == (404, "Not Found")
    assert reply(301, body="x" * 65537) == (422, "Validation Failed")
    assert reply(301, client_=issues_only) == (403, "Resource not accessible by integration")
    assert fake.auth_failures[-1][2] == "token lacks pull_requests:write"
    assert [c["user"] for c in fake.review_comments.values()] == ["dora", "carol", "dora", "dora"]


def test_the_app_edits_its_own_review_comments_and_no_one_else_s(
    fake: FakeGitHub, app_client: GitHub, reviewed: int
):
    github = token_client(fake, app_client)
    reply = github.rest.pulls.create_reply_for_review_comment(
        "acme", "widgets", reviewed, 301, body="Working on it.").parsed_data

    edited = github.rest.pulls.update_review_comment("acme", "widgets", reply.id, body="Done.")
    with pytest.raises(RequestFailed) as theirs:
        github.rest.pulls.update_review_comment("acme", "widgets", 301, body="Never mind.")
    with pytest.raises(RequestFailed) as unknown:
        github.rest.pulls.update_review_comment("acme", "widgets", 999, body="?")

    assert (edited.status_code, edited.parsed_data.body, edited.parsed_data.in_reply_to_id) == (
        200, "Done.", 301)
    assert fake.review_comments[reply.id]["history"] == ["Working on it.", "Done."]
    assert status_of(theirs) == (403, "Resource not accessible by integration")
    assert fake.review_comments[301]["body"] == "Why 50?"
    assert status_of(unknown) == (404, "Not Found")


def test_the_app_reacts_to_a_review_comment(fake: FakeGitHub, app_client: GitHub, reviewed: int):
    github = token_client(fake, app_client)
    issues_only = token_client(fake, app_client, permissions={"issues": "write"})

    first = github.rest.reactions.create_for_pull_request_review_comment(
        "acme", "widgets", 301, content="eyes")
    again = github.rest.reactions.create_for_pull_request_review_comment(
        "acme", "widgets", 301, content="eyes")
    with pytest.raises(RequestFailed) as as_issue_comment:
        github.rest.reactions.create_for_issue_comment("acme", "widgets", 301, content="eyes")
    with pytest.raises(RequestFailed) as without_pulls:
        issues_only.rest.reactions.create_for_pull_request_review_comment(
            "acme", "widgets", 303, content="eyes")
    listed = github.rest.pulls.list_review_comments("acme", "widgets", reviewed).parsed_data

    assert (first.status_code, again.status_code, first.parsed_data.content) == (201, 200, "eyes")
    assert [(r["comment_id"], r["content"]) for r in fake.reactions] == [(301, "eyes")]
    assert status_of(as_issue_comment) == (404, "Not Found")
    assert status_of(without_pulls) == (403, "Resource not accessible by integration")
    assert (listed[0].reactions.eyes, listed[0].reactions.total_count) == (1, 1)
    assert listed[2].reactions.total_count == 0


def test_a_push_that_changes_the_file_outdates_its_threads(
    fake: FakeGitHub, app_client: GitHub, reviewed: int
):
    before = bare_git(fake, REPO, "rev-parse", "parts")
    after = fake.push_commit(REPO, "parts", {"src/parts.py": WIDGET.replace("PART_5 = 5\n", "")})
    github = token_client(fake, app_client)

    listed = github.rest.pulls.list_review_comments("acme", "widgets", reviewed)
    top, reply, other = listed.parsed_data

    assert (top.line, top.position, top.original_line, top.original_position) == (None, None, 5, 5)
    assert (top.commit_id, top.original_commit_id) == (before, before)
    assert (reply.line, reply.commit_id) == (None, before)
    assert (other.line, other.position, other.commit_id) == (2, 2, after)


THREADS = """
query($owner: String!, $name: String!, $number: Int!, $cursor: String, $first: Int = 100) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: $first, after: $cursor) {
        nodes {
          id isResolved isOutdated path line startLine diffSide
          comments(first: 50) { nodes { databaseId body author { login } diffHunk createdAt } }
        }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}
"""


def test_review_threads_over_graphql_resolved_or_not(
    fake: FakeGitHub, app_client: GitHub, reviewed: int
):
    github = token_client(fake, app_client, permissions={"pull_requests": "write"})
    reply = github.rest.pulls.create_reply_for_review_comment(
        "acme", "widgets", reviewed, 303, body="Red it is.").parsed_data
    fake.resolve_thread(REPO, reply.id)
    variables = {"owner": "acme", "name": "widgets", "number": reviewed}

    def review_threads() -> dict:
        return github.graphql.request(THREADS, variables)["repository"]["pullRequest"][
            "reviewThreads"]

    threads = review_threads()
    fake.resolve_thread(REPO, 303, resolved=False)
    unresolved = review_threads()["nodes"]

    first, second = threads["nodes"]
    assert threads["pageInfo"]["hasNextPage"] is False
    assert (first["isResolved"], first["isOutdated"], first["path"], first["line"]) == (
        False, False, "src/parts.py", 5)
    assert (first["startLine"], first["diffSide"], first["id"]) == (None, "RIGHT", "PRRT_fake301")
    assert [(c["databaseId"], c["author"]["login"], c["body"])
            for c in first["comments"]["nodes"]] == [
        (301, "dora", "Why 50?"), (302, "carol", "It is bigger.")]
    assert first["comments"]["nodes"][0]["diffHunk"].endswith("+PART_5 = 50")
    assert (second["isResolved"], second["startLine"], second["line"]) == (True, 1, 2)
    # GraphQL calls a bot by its app's slug, where REST says "async-code[bot]".
    assert [c["author"]["login"] for c in second["comments"]["nodes"]] == ["dora", "async-code"]
    assert [thread["isResolved"] for thread in unresolved] == [False, False]


def test_review_threads_come_a_page_at_a_time(fake: FakeGitHub, app_client: GitHub, reviewed: int):
    github = token_client(fake, app_client, permissions={"pull_requests": "read"})
    fake.push_commit(REPO, "parts", {"src/widget.py": "SIZE = 2\n"})

    pages = list(github.graphql.paginate(
        THREADS, {"owner": "acme", "name": "widgets", "number": reviewed, "first": 1}))
    short = THREADS.replace("comments(first: 50)", "comments(first: 1)")
    truncated = github.graphql.request(short, {"owner": "acme", "name": "widgets",
                                               "number": reviewed})

    nodes = [page["repository"]["pullRequest"]["reviewThreads"]["nodes"] for page in pages]
    assert [[thread["id"] for thread in page] for page in nodes] == [["PRRT_fake301"],
                                                                     ["PRRT_fake303"]]
    assert [page[0]["isOutdated"] for page in nodes] == [False, True]
    assert nodes[1][0]["line"] is None
    first_thread = truncated["repository"]["pullRequest"]["reviewThreads"]["nodes"][0]
    assert len(first_thread["comments"]["nodes"]) == 1


def post_graphql(fake: FakeGitHub, token: str | None, query: str,
                 variables: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=fake.base_url) as http:
        return http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


def test_graphql_answers_errors_as_github_does(fake: FakeGitHub, app_client: GitHub, reviewed: int):
    fake.add_repo("acme/private", {"README.md": "x\n"})
    token = mint_token(app_client, permissions={"pull_requests": "read"})
    issues_only = mint_token(app_client, permissions={"issues": "read"})
    ours = {"owner": "acme", "name": "widgets", "number": reviewed}

    def error(query: str = THREADS, variables: dict = ours, with_token: str | None = token):
        response = post_graphql(fake, with_token, query, variables)
        assert response.status_code == 200, response.text
        return response.json()

    unsupported = error("query { viewer { login } }", {})
    assert "data" not in unsupported and "reviewThreads" in unsupported["errors"][0]["message"]
    github = client(fake, TokenAuthStrategy(token))
    with pytest.raises(GraphQLFailed):
        github.graphql.request("query { viewer { login } }")
    assert error(THREADS.replace("reviewThreads(first: $first, after: $cursor)",
                                 "reviewThreads(after: $cursor)"))["errors"][0]["message"] == (
        "You must provide a `first` or `last` value to properly paginate the `reviewThreads` "
        "connection.")
    assert error(variables={**ours, "first": 101})["errors"][0]["message"] == (
        "Requesting 101 records on the `reviewThreads` connection exceeds the `first` limit of "
        "100 records.")
    assert error(variables={**ours, "cursor": "bm9wZQ=="})["errors"][0]["message"] == (
        "`bm9wZQ==` does not appear to be a valid cursor.")
    missing_pull = error(variables={**ours, "number": 999})
    assert missing_pull == {"data": {"repository": {"pullRequest": None}}, "errors": [{
        "message": "Could not resolve to a PullRequest with the number of 999.",
        "type": "NOT_FOUND", "path": ["repository", "pullRequest"]}]}
    not_covered = error(variables={**ours, "name": "private"})
    assert not_covered["data"] == {"repository": None}
    assert not_covered["errors"][0]["type"] == "NOT_FOUND"
    forbidden = error(with_token=issues_only)
    assert forbidden["data"] == {"repository": {"pullRequest": None}}
    assert (forbidden["errors"][0]["type"], forbidden["errors"][0]["message"]) == (
        "FORBIDDEN", "Resource not accessible by integration")
    anonymous = post_graphql(fake, None, THREADS, ours)
    assert (anonymous.status_code, anonymous.json()["message"]) == (
        401, "This endpoint requires you to be authenticated.")
    assert post_graphql(fake, "ghs_made_up", THREADS, ours).status_code == 401
