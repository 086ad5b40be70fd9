"""Reading a file through the contents API: the fake answers as GitHub does, from the real bare
repository at the asked ref, and the runner's client reads the default branch only."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed

from runner.github import GitHubApp, GitHubError
from tests.fakes.github import MAX_INLINE_CONTENT_BYTES, NOT_ACCESSIBLE, FakeGitHub
from tests.test_fake_github import APP_ID, INSTALLATION_ID, bare_git, client, mint_token, status_of

REPO = "acme/widgets"
TRUNK_REPO = "acme/gadgets"  # its default branch is not "main"
EMPTY_REPO = "acme/nothing"
CONFIG = ".github/async-code.yml"
SUBMODULE_COMMIT = "1" * 40
READ_CONTENTS = {"contents": "read", "metadata": "read"}


@pytest.fixture
def fake(tmp_path: Path, app_key: tuple[str, str]):
    with FakeGitHub(tmp_path / "github", app_id=APP_ID, public_key_pem=app_key[1]) as github:
        github.add_repo(REPO, {CONFIG: "timeout: 20m\n", "README.md": "# widgets\n",
                               "src/widget.py": "SIZE = 1\n", "src/ünïcode näme.txt": "ü\n"},
                        submodules={"vendor/lib": SUBMODULE_COMMIT})
        github.add_repo(TRUNK_REPO, {CONFIG: "draft: true\n"}, default_branch="trunk")
        github.add_repo(EMPTY_REPO, None)
        github.add_installation(INSTALLATION_ID, [REPO, TRUNK_REPO, EMPTY_REPO])
        yield github


@pytest.fixture
def github(fake: FakeGitHub, app_key: tuple[str, str]) -> GitHub:
    """githubkit with a token that may read contents, as the acknowledging stage will have."""
    app_client = client(fake, AppAuthStrategy(str(APP_ID), app_key[0]))
    return client(fake, TokenAuthStrategy(mint_token(app_client, permissions=READ_CONTENTS)))


def get(github: GitHub, path: str, **params: str):
    return github.request("GET", f"/repos/{REPO}/contents/{path}", params=params or None)


# The fake's endpoint

def test_a_file_comes_as_github_sends_it(fake: FakeGitHub, github: GitHub):
    response = github.rest.repos.get_content("acme", "widgets", CONFIG)
    body = response.json()
    blob = bare_git(fake, REPO, "rev-parse", f"main:{CONFIG}")

    assert (body["type"], body["encoding"], body["name"], body["path"]) == (
        "file", "base64", "async-code.yml", CONFIG)
    assert (body["sha"], body["size"]) == (blob, len("timeout: 20m\n"))
    assert base64.b64decode(body["content"]) == b"timeout: 20m\n"
    assert body["url"] == f"{fake.base_url}/repos/{REPO}/contents/{CONFIG}?ref=main"
    assert body["git_url"] == f"{fake.base_url}/repos/{REPO}/git/blobs/{blob}"
    assert body["html_url"] == f"{fake.base_url}/{REPO}/blob/main/{CONFIG}"
    assert body["_links"] == {"self": body["url"], "git": body["git_url"], "html": body["html_url"]}
    assert response.parsed_data.content == body["content"]  # githubkit's model accepts it


def test_base64_is_wrapped_at_60_characters_as_github_does(fake: FakeGitHub, github: GitHub):
    text = "".join(f"line {number}\n" for number in range(100))
    fake.push_commit(REPO, "main", {"long.txt": text})

    content = get(github, "long.txt").json()["content"]

    assert {len(line) for line in content.splitlines()[:-1]} == {60}
    assert content.endswith("\n")
    assert base64.b64decode(content).decode() == text


def test_ref_picks_a_branch_a_tag_or_a_commit(fake: FakeGitHub, github: GitHub):
    head = fake.push_commit(REPO, "topic", {CONFIG: "timeout: 5m\n"}, parent_branch="main")
    first = bare_git(fake, REPO, "rev-parse", "main")
    bare_git(fake, REPO, "tag", "v1", first)

    def read(**params: str) -> bytes:
        return base64.b64decode(get(github, CONFIG, **params).json()["content"])

    assert read() == b"timeout: 20m\n"  # the default branch
    assert read(ref="topic") == read(ref=head) == read(ref=head[:10]) == b"timeout: 5m\n"
    assert read(ref="main") == read(ref="v1") == read(ref=first) == b"timeout: 20m\n"


def test_a_directory_lists_its_entries(fake: FakeGitHub, github: GitHub):
    listing = get(github, "src").json()
    root = github.request("GET", f"/repos/{REPO}/contents").json()

    assert [(entry["type"], entry["path"]) for entry in listing] == [
        ("file", "src/widget.py"), ("file", "src/ünïcode näme.txt")]
    assert all("content" not in entry for entry in listing)
    assert listing[0]["download_url"] == f"{fake.base_url}/{REPO}/raw/main/src/widget.py"
    # A listing calls a submodule a file, as GitHub does for compatibility.
    assert [(entry["type"], entry["name"]) for entry in root] == [
        ("dir", ".github"), ("file", "README.md"), ("dir", "src"), ("dir", "vendor")]
    assert [(entry["type"], entry["sha"]) for entry in get(github, "vendor").json()] == [
        ("file", SUBMODULE_COMMIT)]


def test_a_submodule_is_described_without_content(github: GitHub):
    body = get(github, "vendor/lib").json()
    assert (body["type"], body["sha"], body["size"]) == ("submodule", SUBMODULE_COMMIT, 0)
    assert "content" not in body and body["submodule_git_url"]


def test_a_path_with_spaces_and_non_ascii_letters(github: GitHub):
    body = get(github, "src/ünïcode näme.txt").json()
    assert base64.b64decode(body["content"]).decode() == "ü\n"


@pytest.mark.parametrize("path, params, message", [
    (".github/missing.yml", {}, "Not Found"),
    ("README.md/inside", {}, "Not Found"),
    # Encoded, or the client would resolve the dots itself.
    ("src/%2E%2E/README.md", {}, "Not Found"),
    ("%2E/README.md", {}, "Not Found"),
    ("readme.md", {}, "Not Found"),  # paths are case-sensitive
    ("README.md", {"ref": "no-such-branch"}, "No commit found for the ref no-such-branch"),
])
def test_what_is_not_there_is_404(github: GitHub, path, params, message):
    with pytest.raises(RequestFailed) as missing:
        get(github, path, **params)
    assert status_of(missing) == (404, message)


def test_an_empty_repository_has_no_contents(github: GitHub):
    with pytest.raises(RequestFailed) as empty:
        github.request("GET", f"/repos/{EMPTY_REPO}/contents/README.md")
    assert status_of(empty) == (404, "This repository is empty.")


def test_reading_contents_needs_the_contents_permission(fake: FakeGitHub, app_key):
    app_client = client(fake, AppAuthStrategy(str(APP_ID), app_key[0]))
    issues_only = client(fake, TokenAuthStrategy(mint_token(app_client,
                                                            permissions={"issues": "write"})))
    with pytest.raises(RequestFailed) as refused:
        issues_only.request("GET", f"/repos/{REPO}/contents/{CONFIG}")
    assert status_of(refused) == (403, NOT_ACCESSIBLE)
    assert fake.auth_failures[-1][2] == "token lacks contents:read"


def test_a_file_over_a_megabyte_comes_without_content(fake: FakeGitHub, github: GitHub):
    fake.push_commit(REPO, "main", {"big.bin": "x" * (MAX_INLINE_CONTENT_BYTES + 1)})
    body = get(github, "big.bin").json()
    assert (body["encoding"], body["content"], body["size"]) == (
        "none", "", MAX_INLINE_CONTENT_BYTES + 1)


# The runner's client

@pytest.fixture
def app(fake: FakeGitHub, app_key: tuple[str, str]) -> GitHubApp:
    return GitHubApp(app_id=str(APP_ID), private_key=app_key[0], api_url=fake.base_url,
                     slug="async-code")


def reader(app: GitHubApp, repo: str = REPO):
    return app.repo_client(INSTALLATION_ID, repo, READ_CONTENTS)


def test_the_client_reads_the_file_on_the_default_branch(fake: FakeGitHub, app: GitHubApp):
    assert reader(app).file_on_default_branch(CONFIG, max_bytes=1024) == "timeout: 20m\n"
    contents = [r for r in fake.requests if "/contents/" in r["path"]]
    assert [(r["path"], r["query"]) for r in contents] == [
        (f"/repos/{REPO}/contents/{CONFIG}", "ref=main")]


def test_the_client_never_reads_a_pull_requests_head(fake: FakeGitHub, app: GitHubApp):
    fake.add_pull(REPO, head="raise-limits", files={CONFIG: "timeout: 9h\n"})
    assert reader(app).file_on_default_branch(CONFIG, max_bytes=1024) == "timeout: 20m\n"


def test_the_client_follows_the_repositorys_own_default_branch(fake: FakeGitHub, app: GitHubApp):
    assert reader(app, TRUNK_REPO).file_on_default_branch(CONFIG, max_bytes=1024) == "draft: true\n"
    assert [r["query"] for r in fake.requests if "/contents/" in r["path"]] == ["ref=trunk"]


def test_no_file_and_an_empty_repository_read_as_none(app: GitHubApp):
    assert reader(app).file_on_default_branch(".github/other.yml", max_bytes=1024) is None
    assert reader(app, EMPTY_REPO).file_on_default_branch(CONFIG, max_bytes=1024) is None


def test_a_file_over_the_cap_is_refused_before_it_is_decoded(fake: FakeGitHub, app: GitHubApp):
    fake.push_commit(REPO, "main", {CONFIG: "# padding\n" * 200})
    with pytest.raises(GitHubError, match=r"`\.github/async-code\.yml` on the default branch is "
                                          r"2,000 bytes; the most read is 1,024"):
        reader(app).file_on_default_branch(CONFIG, max_bytes=1024)


def test_a_file_over_a_megabyte_is_refused_too(fake: FakeGitHub, app: GitHubApp):
    fake.push_commit(REPO, "main", {CONFIG: "#" * (MAX_INLINE_CONTENT_BYTES + 1)})
    with pytest.raises(GitHubError, match="did not send the content"):
        reader(app).file_on_default_branch(CONFIG, max_bytes=2 * MAX_INLINE_CONTENT_BYTES)


@pytest.mark.parametrize("path", ["src", "vendor/lib"])
def test_a_directory_or_a_submodule_is_not_a_file(app: GitHubApp, path):
    with pytest.raises(GitHubError, match=f"`{path}` on the default branch is not a file"):
        reader(app).file_on_default_branch(path, max_bytes=1024)


def test_text_that_is_not_utf8_is_refused(fake: FakeGitHub, app: GitHubApp):
    latin1 = "draft: tr\xe8s\n".encode("latin-1")
    body = {"type": "file", "encoding": "base64", "size": len(latin1), "name": "async-code.yml",
            "path": CONFIG, "content": base64.b64encode(latin1).decode()}
    fake.fail_next("GET", r"/contents/", 200, body)
    with pytest.raises(GitHubError, match="is not UTF-8 text"):
        reader(app).file_on_default_branch(CONFIG, max_bytes=1024)


def test_without_the_contents_permission_the_client_says_github_refused(app: GitHubApp):
    issues_only = app.repo_client(INSTALLATION_ID, REPO, {"issues": "write", "metadata": "read"})
    with pytest.raises(GitHubError) as refused:
        issues_only.file_on_default_branch(CONFIG, max_bytes=1024)
    assert refused.value.status == 403


def test_the_text_comes_back_byte_for_byte(fake: FakeGitHub, app: GitHubApp):
    text = "instructions: |\n  Keep\ttabs, “quotes” and CRLF.\r\n  ✓\n"
    fake.push_commit(REPO, "main", {CONFIG: text})
    assert reader(app).file_on_default_branch(CONFIG, max_bytes=1024) == text
